using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using System.Text.Json.Nodes;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Tests.Data;
using static Updp.Tests.Checkpoints.TestSupport;

namespace Updp.Tests.Checkpoints;

/// <summary>
/// One small reproduction of each loader failure <see cref="FuzzTests"/> found: each used to escape
/// as an undocumented exception, or to allocate what a header claimed before checking it.
/// </summary>
public sealed class FuzzFindingsTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static long Allocated(Action action)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        action();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Fact]
    public void IdxSizesWhoseProductOverflowsALongAreInvalidData()
    {
        // 0x7FFFFFFF³ wraps a long to a negative length; it was an OverflowException from new byte[].
        var bytes = IdxBytes.Images(1, 2, 2);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), int.MaxValue);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), int.MaxValue);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), int.MaxValue);
        var path = _dir.Write("huge-idx3-ubyte", bytes);
        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(path));
        Assert.Contains("more than fits in memory", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void IdxCountBeyondTheDataIsTruncatedWithoutAllocatingIt(bool gzip)
    {
        // 600 million labels declared, 3 present: the 600 MB array was allocated before the read came up short.
        var bytes = IdxBytes.Labels(3);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), 600_000_000);
        var path = gzip ? _dir.WriteGzip("labels-idx1-ubyte.gz", bytes) : _dir.Write("labels-idx1-ubyte", bytes);
        InvalidDataException? e = null;
        var allocated = Allocated(() => e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadLabels(path)));
        Assert.Contains("expected 600000000 bytes of label data after the header, got 3", e!.Message);
        Assert.InRange(allocated, 0, 8L << 20);
    }

    [Fact]
    public void LargeGzipIdxStillReadsWhole()
    {
        // The gzip body grows as it is read; a file larger than the first buffer must come out whole.
        var bytes = IdxBytes.Images(2000, 28, 28, i => (byte)(i * 31 % 251));
        var path = _dir.WriteGzip("images-idx3-ubyte.gz", bytes);
        var images = IdxReader.ReadImages(path);
        Assert.Equal(2000, images.Count);
        Assert.True(images.Pixels.AsSpan().SequenceEqual(bytes.AsSpan(16)));
    }

    [Fact]
    public void SafetensorsHeaderWithInvalidUtf8IsACheckpointError()
    {
        // Valid JSON syntax, but a name with a lone continuation byte: JsonDocument parsed it and
        // threw InvalidOperationException only when the name was read.
        var header = Encoding.UTF8.GetBytes("{\"a\u00e9\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}");
        var at = Array.IndexOf(header, (byte)0xC3);
        header[at] = 0x80;
        var file = new byte[8 + header.Length + 4];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        var path = _dir.Write("bad.safetensors", file);
        var e = Assert.Throws<CheckpointException>(() => StateDict.Read(path));
        Assert.Equal($"'{path}' is not a valid safetensors file: the header is not valid UTF-8", e.Message);
    }

    private static string Sidecar(string field, string value, string parent = "model")
    {
        var json = JsonNode.Parse("""
            {"format_version": 1, "model": {"name": "mobilenetv2_050", "in_chans": 1, "num_classes": 10, "stem_stride": 1},
             "preprocessing": {"image_size": 28, "input_size": 32, "mean": 0.28, "std": 0.35}}
            """)!;
        json[parent]![field] = JsonValue.Create("__v__");
        return json.ToJsonString().Replace("\"__v__\"", value, StringComparison.Ordinal);
    }

    [Fact]
    public void SidecarWithADuplicateKeyIsACheckpointError()
    {
        // JsonObject threw ArgumentException ("An item with the same key has already been added").
        var weights = _dir.File("m.safetensors");
        File.WriteAllText(Checkpoint.SidecarPath(weights), Sidecar("num_classes", "10").Replace("\"model\":", "\"epoch\": 1, \"epoch\": 2, \"model\":", StringComparison.Ordinal));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.ReadMeta(weights));
        Assert.StartsWith($"cannot read sidecar '{Checkpoint.SidecarPath(weights)}'", e.Message);
    }

    [Theory]
    // System.Text.Json named the .NET type: "could not be converted to System.Int32".
    [InlineData("num_classes", "\"ten\"", "'model.num_classes'", "a whole number in range")]
    [InlineData("num_classes", "1e20", "'model.num_classes'", "a whole number in range")]
    [InlineData("in_chans", "true", "'model.in_chans'", "a whole number in range")]
    public void ASidecarValueOfTheWrongTypeIsNamedByItsKey(string field, string value, string key, string expected)
    {
        var weights = _dir.File("m.safetensors");
        File.WriteAllText(Checkpoint.SidecarPath(weights), Sidecar(field, value));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.ReadMeta(weights));
        Assert.Contains(key, e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("System.", e.Message);
    }

    [Theory]
    // libtorch refused these only while building the stem (ExternalException), or built for seconds.
    [InlineData("in_chans", "0", "in_chans 0 is not from 1 to 64")]
    [InlineData("in_chans", "-1", "in_chans -1 is not from 1 to 64")]
    [InlineData("in_chans", "1000000", "in_chans 1000000 is not from 1 to 64")]
    [InlineData("num_classes", "2147483647", "num_classes 2147483647 is not from 1 to 100000")]
    [InlineData("stem_stride", "0", "stem_stride 0 is not from 1 to 64")]
    [InlineData("img_size", "8192", "img_size 8192 is not from 1 to 8192, or makes more than 256 patches a side with stem_stride 1")]
    [InlineData("drop_path_rate", "\"NaN\"", "drop_path_rate NaN is not in [0, 1)")]
    public void ImplausibleModelValuesInTheSidecarAreRefusedBeforeBuilding(string field, string value, string why)
    {
        var weights = _dir.File("m.safetensors");
        File.WriteAllText(Checkpoint.SidecarPath(weights), Sidecar(field, value));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.ReadMeta(weights));
        Assert.Equal($"sidecar '{Checkpoint.SidecarPath(weights)}' is damaged or was not written by Updp: {why}", e.Message);
    }

    [Theory]
    [InlineData("std", "0")]
    [InlineData("mean", "\"NaN\"")]
    [InlineData("input_size", "0")]
    public void ImplausiblePreprocessingInTheSidecarIsRefused(string field, string value)
    {
        var weights = _dir.File("m.safetensors");
        File.WriteAllText(Checkpoint.SidecarPath(weights), Sidecar(field, value, "preprocessing"));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.ReadMeta(weights));
        Assert.Contains("is damaged or was not written by Updp: preprocessing", e.Message);
    }

    [Fact]
    public void PickleLengthPastItsEndIsRefusedBeforeTheUnpicklerAllocatesIt()
    {
        // A BINUNICODE length of 2 GB in a pickle whose CRC was made to match: the unpickler
        // allocated it (OutOfMemoryException) before finding the pickle short.
        var original = Fixture("deit_reduced.pt");
        var file = File.ReadAllBytes(original);
        var (name, pickle) = ZipIntegrityTests.Members(original).Single(kv => kv.Key.EndsWith("/data.pkl", StringComparison.Ordinal));
        var pickleAt = ZipIntegrityTests.OffsetOf(file, pickle);
        var x = Array.IndexOf(pickle, (byte)'X');
        var damaged = (byte[])pickle.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(damaged.AsSpan(x + 1), int.MaxValue);
        damaged.CopyTo(file, pickleAt);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(ZipIntegrityTests.CentralHeaderOf(file, name) + 16), Crc32.HashToUInt32(damaged));
        var path = _dir.Write("long.pth", file);

        CheckpointException? e = null;
        var allocated = Allocated(() => e = Assert.Throws<CheckpointException>(() => StateDict.Read(path)));
        Assert.Equal($"'{path}': member '{name}' is not a valid pickle: the argument of opcode 0x58 at offset {x} runs past the end of the pickle ({pickle.Length} bytes)", e!.Message);
        Assert.InRange(allocated, 0, 8L << 20);
    }
}
