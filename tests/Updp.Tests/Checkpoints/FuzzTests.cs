using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Hashing;
using System.Text;
using System.Text.Json.Nodes;
using TorchSharp;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using DeiTModel = Updp.Models.DeiT.DeiT;
using Updp.Tests.Data;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static Updp.Tests.Checkpoints.TestSupport;

namespace Updp.Tests.Checkpoints;

/// <summary>
/// Seeded fuzzing of every file loader: a few hundred mutants of each kind of input (bit flips,
/// byte overwrites, truncation, inserted, duplicated and deleted chunks, length fields set to
/// zero, huge or negative values, JSON values of the wrong type, NaN or huge) are loaded in
/// process. A loader may refuse a mutant only with the input error it documents; any other
/// exception, a load slower than <see cref="PerMutantLimit"/> or more than
/// <see cref="AllocationLimit"/> of managed allocation fails the test, naming each mutant by
/// target, index, seed and kind. The mutants are a pure function of <see cref="Seed"/>, the index and
/// the base files (built deterministically here or read from Fixtures; the gzip ones come from the
/// runtime's zlib), so rerunning the test reproduces a failure, and <c>Rng(target, index)</c>
/// regenerates one mutant. Loads that succeed are fine: safetensors data and a pickle whose CRC was
/// made to match may hold other values. About 1,500 mutants take some 15 s on two cores.
/// </summary>
public sealed class FuzzTests(ITestOutputHelper output)
{
    private const int Seed = 13_0607;

    private static readonly TimeSpan PerMutantLimit = TimeSpan.FromSeconds(5);

    // Far above what any of these small inputs (at most 3 MB) needs: catches sizes from headers
    // that are allocated before being checked against the file.
    private const long AllocationLimit = 256L << 20;

    private const string SidecarModel = "mobilenetv2_050";

    // deit_reduced.pt's architecture (as DeiTForeignCheckpointTests builds it).
    private static readonly CheckpointLoadOptions ReducedDeiT = new() { CreateModel = (c, _) => new DeiTModel(c, new DeiTModel.Architecture(48, 3, 3)) };

    // Checkpoint.Save's key for the weights id, written here with a fixed id so the base files are always the same bytes.
    private const string WeightsIdKey = "updp_weights_id";
    private const string WeightsId = "0123456789abcdef0123456789abcdef";

    private static readonly string SidecarJson = $$"""
        {
          "format_version": 1,
          "model": { "name": "{{SidecarModel}}", "in_chans": 1, "num_classes": 10, "stem_stride": 1, "drop_path_rate": 0.05 },
          "classes": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
          "epoch": 3,
          "metrics": { "val_acc": 0.875, "val_loss": "NaN", "latency_ms": 1.5 },
          "created": "2026-01-02T03:04:05+00:00",
          "weights_id": "{{WeightsId}}",
          "preprocessing": { "image_size": 28, "input_size": 32, "mean": 0.2860, "std": 0.3530, "transform": "pad", "channels": 1, "channel_mean": [0.286], "channel_std": [0.353], "crop_pct": 0.875, "scale": [0.08, 1.0], "ratio": [0.75, 1.3333] },
          "extra": { "pruning": { "blocks": [1, 0, 1], "lambda": 0.5 } }
        }
        """;

    private enum Target
    {
        Safetensors,
        Sidecar,
        Idx,
        Pth,
    }

    private sealed record Mutant(Target Target, int Index, string Kind, byte[] Bytes)
    {
        public override string ToString() => $"{Target} mutant {Index} (seed {Seed}, kind {Kind})";
    }

    [Fact]
    public void SafetensorsWithSidecarMutantsLoadOrFailWithCheckpointException()
    {
        using var dir = new TempDir();
        var (weights, header) = BaseSafetensors();
        var sidecar = Encoding.UTF8.GetBytes(SidecarJson);
        var path = dir.File("m.safetensors");
        File.WriteAllBytes(path, weights);
        File.WriteAllBytes(Checkpoint.SidecarPath(path), sidecar);
        // The base pair loads: mutants start from a valid checkpoint.
        Checkpoint.Load(path).Model.Dispose();

        var mutants = new List<Mutant>();
        for (var i = 0; i < 240; i++)
        {
            var rng = Rng(Target.Safetensors, i);
            mutants.Add(rng.Next(4) switch
            {
                0 => Named(Target.Safetensors, i, "length-field", SetSafetensorsHeaderLength(weights, header, rng)),
                1 => Named(Target.Safetensors, i, "json-value", ReplaceSafetensorsJson(weights, header, rng)),
                _ => Named(Target.Safetensors, i, ByteMutation(weights, rng, (0, 8 + header), out var b), b),
            });
        }
        // The sidecar's values decide which model is built: mutate it next to intact weights, at
        // random and in every field of the model's configuration.
        for (var i = 240; i < 300; i++)
        {
            var rng = Rng(Target.Safetensors, i);
            mutants.Add(Named(Target.Safetensors, i, "sidecar-json-value", ReplaceJsonValue(sidecar, rng)));
        }
        foreach (var field in new[] { "in_chans", "num_classes", "stem_stride", "img_size", "drop_path_rate", "ls_init_value" })
        {
            foreach (var value in new[] { "0", "-1", "2", "4097", "1000000", "2147483647", "1e400", "NaN", "\"x\"", "[1]" })
            {
                var json = JsonNode.Parse(SidecarJson)!;
                json["model"]![field] = JsonValue.Create("__updp_fuzz__");
                mutants.Add(Named(Target.Safetensors, mutants.Count, $"sidecar-model-field {field}={value}",
                    Encoding.UTF8.GetBytes(json.ToJsonString().Replace(Placeholder, value, StringComparison.Ordinal))));
            }
        }

        Fuzz(mutants, m =>
        {
            var sidecarMutant = m.Kind.StartsWith("sidecar", StringComparison.Ordinal);
            File.WriteAllBytes(path, sidecarMutant ? weights : m.Bytes);
            File.WriteAllBytes(Checkpoint.SidecarPath(path), sidecarMutant ? m.Bytes : sidecar);
        }, () =>
        {
            Checkpoint.ReadMeta(path);
            Checkpoint.Load(path).Model.Dispose();
        }, e => e is CheckpointException);
    }

    [Fact]
    public void SidecarMutantsReadOrFailWithCheckpointException()
    {
        using var dir = new TempDir();
        var sidecar = Encoding.UTF8.GetBytes(SidecarJson);
        var path = dir.File("m.safetensors");
        File.WriteAllBytes(Checkpoint.SidecarPath(path), sidecar);
        Assert.NotNull(Checkpoint.ReadMeta(path));

        var mutants = new List<Mutant>();
        for (var i = 0; i < 400; i++)
        {
            var rng = Rng(Target.Sidecar, i);
            mutants.Add(rng.Next(3) == 0
                ? Named(Target.Sidecar, i, ByteMutation(sidecar, rng, (0, sidecar.Length), out var b), b)
                : Named(Target.Sidecar, i, "json-value", ReplaceJsonValue(sidecar, rng)));
        }
        Fuzz(mutants, m => File.WriteAllBytes(Checkpoint.SidecarPath(path), m.Bytes), () => Checkpoint.ReadMeta(path), e => e is CheckpointException);
    }

    [Fact]
    public void IdxDatasetMutantsLoadOrFailWithInvalidDataException()
    {
        using var dir = new TempDir();
        // Training files raw, test files gzip-compressed: both forms are read.
        var files = new (string Name, byte[] Bytes, int HeaderLength)[]
        {
            ("train-images-idx3-ubyte", IdxBytes.Images(24, 28, 28), 16),
            ("train-labels-idx1-ubyte", IdxBytes.Labels(24), 8),
            ("t10k-images-idx3-ubyte.gz", Gzip(IdxBytes.Images(12, 28, 28)), 10),
            ("t10k-labels-idx1-ubyte.gz", Gzip(IdxBytes.Labels(12)), 10),
        };
        void WriteBase()
        {
            foreach (var (name, bytes, _) in files)
            {
                File.WriteAllBytes(Path.Combine(dir.Path, name), bytes);
            }
        }
        WriteBase();
        DataSplits Load() => DatasetCatalog.Resolve(dir.Path, null, dir.Path).LoadSplits(validationCount: 0);
        Assert.Equal(24, Load().Train.Count);

        var mutants = new List<Mutant>();
        var which = new List<int>();
        for (var i = 0; i < 400; i++)
        {
            var rng = Rng(Target.Idx, i);
            var f = rng.Next(files.Length);
            var (name, bytes, headerLength) = files[f];
            var raw = !name.EndsWith(".gz", StringComparison.Ordinal);
            which.Add(f);
            mutants.Add(raw && rng.Next(3) == 0
                ? Named(Target.Idx, i, $"length-field {name}", SetIdxField(bytes, headerLength, rng))
                : Named(Target.Idx, i, $"{ByteMutation(bytes, rng, (0, headerLength), out var b)} {name}", b));
        }
        Fuzz(mutants, m =>
        {
            WriteBase();
            File.WriteAllBytes(Path.Combine(dir.Path, files[which[m.Index]].Name), m.Bytes);
        }, () => Load(), e => e is InvalidDataException);
    }

    [Fact]
    public void PthMutantsLoadOrFailWithCheckpointException()
    {
        using var dir = new TempDir();
        var original = Fixture("deit_reduced.pt");
        var pth = File.ReadAllBytes(original);
        var members = ZipIntegrityTests.Members(original);
        var (pickleName, pickle) = members.Single(kv => kv.Key.EndsWith("/data.pkl", StringComparison.Ordinal));
        var pickleAt = ZipIntegrityTests.OffsetOf(pth, pickle);
        var pickleCrcAt = ZipIntegrityTests.CentralHeaderOf(pth, pickleName) + 16;
        // The central directory and end records follow the members' data.
        var directoryAt = members.Keys.Min(name => ZipIntegrityTests.CentralHeaderOf(pth, name));
        var path = dir.File("m.pth");
        File.WriteAllBytes(path, pth);
        Checkpoint.Load(path, "deit_tiny_patch16_224", ReducedDeiT).Model.Dispose();

        var mutants = new List<Mutant>();
        for (var i = 0; i < 400; i++)
        {
            var rng = Rng(Target.Pth, i);
            mutants.Add(rng.Next(4) switch
            {
                0 => Named(Target.Pth, i, "pickle-with-valid-crc", MutatePickle(pth, pickleAt, pickle.Length, pickleCrcAt, rng)),
                1 => Named(Target.Pth, i, "zip-length-field", SetZipField(pth, directoryAt, rng)),
                2 => Named(Target.Pth, i, ByteMutation(pth, rng, (directoryAt, pth.Length), out var d), d),
                _ => Named(Target.Pth, i, ByteMutation(pth, rng, (0, pickleAt + pickle.Length), out var p), p),
            });
        }
        Fuzz(mutants, m => File.WriteAllBytes(path, m.Bytes), () =>
        {
            // Through the state-dict reader and then the DeiT adapter, into the fixture's reduced architecture.
            Checkpoint.Load(path, "deit_tiny_patch16_224", ReducedDeiT).Model.Dispose();
        }, e => e is CheckpointException);
    }

    // ---- running ----

    private void Fuzz(List<Mutant> mutants, Action<Mutant> write, Action load, Func<Exception, bool> documented)
    {
        var failures = new List<string>();
        var refused = 0;
        var clock = Stopwatch.StartNew();
        var slowest = TimeSpan.Zero;
        Mutant? slowestMutant = null;
        foreach (var m in mutants)
        {
            write(m);
            Exception? error = null;
            long allocated = 0;
            var task = Task.Run(() =>
            {
                var before = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    load();
                }
                catch (Exception e)
                {
                    error = e;
                }
                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            });
            var started = Stopwatch.StartNew();
            if (!task.Wait(PerMutantLimit))
            {
                // The load goes on in the background; nothing after it can be trusted.
                failures.Add($"{m}: still loading after {PerMutantLimit.TotalSeconds} s");
                break;
            }
            if (started.Elapsed > slowest)
            {
                (slowest, slowestMutant) = (started.Elapsed, m);
            }
            if (error is not null && !documented(error))
            {
                failures.Add($"{m}: {error.GetType().FullName}: {StateDict.FirstLine(error.Message)}{Environment.NewLine}{error.StackTrace}");
            }
            else if (allocated > AllocationLimit)
            {
                failures.Add($"{m}: allocated {allocated >> 20} MiB");
            }
            refused += error is null ? 0 : 1;
        }
        output.WriteLine($"{mutants.Count} mutants ({string.Join(", ", mutants.GroupBy(m => m.Kind.Split(' ')[0]).Select(g => $"{g.Count()} {g.Key}"))}), " +
            $"{refused} refused, {mutants.Count - refused} loaded; {clock.Elapsed.TotalSeconds:F1} s, slowest {slowest.TotalMilliseconds:F0} ms ({slowestMutant})");
        Assert.True(failures.Count == 0, $"{failures.Count} of {mutants.Count} mutants broke the loader:{Environment.NewLine}{string.Join(Environment.NewLine, failures.Take(20))}");
    }

    private static Random Rng(Target target, int index) => new(unchecked((Seed * 31) + ((int)target * 1_000_003) + index));

    private static Mutant Named(Target target, int index, string kind, byte[] bytes) => new(target, index, kind, bytes);

    // ---- base files ----

    // A mobilenetv2_050 checkpoint whose every tensor holds a fixed pattern; returns the file and its JSON header's length.
    private static (byte[] File, int HeaderLength) BaseSafetensors()
    {
        using var model = ModelRegistry.Create(new ModelConfig { Name = SidecarModel, InChans = 1, NumClasses = 10, StemStride = 1, DropPathRate = 0.05 });
        using (no_grad())
        {
            var k = 0;
            foreach (var (_, t) in model.state_dict())
            {
                if (t.is_floating_point())
                {
                    using var pattern = arange(t.NumberOfElements, ScalarType.Float32).mul_(0.001 * ++k).sin_().reshape(t.shape);
                    t.copy_(pattern);
                }
            }
        }
        var stream = new MemoryStream();
        Safetensors.Write(stream, model.state_dict(), new Dictionary<string, string> { ["format"] = "pt", [WeightsIdKey] = WeightsId });
        var bytes = stream.ToArray();
        return (bytes, (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
    }

    private static byte[] Gzip(byte[] data)
    {
        var stream = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(stream, System.IO.Compression.CompressionLevel.Optimal, leaveOpen: true))
        {
            gzip.Write(data);
        }
        return stream.ToArray();
    }

    // ---- byte-level mutations ----

    // Changes bytes, mostly inside focus (the headers), sometimes anywhere; returns the kind of change.
    private static string ByteMutation(byte[] source, Random rng, (int Start, int End) focus, out byte[] mutant)
    {
        int Position(int length) =>
            rng.Next(10) < 7 && focus.End > focus.Start ? Math.Min(length - 1, focus.Start + rng.Next(focus.End - focus.Start)) : rng.Next(length);
        var bytes = new List<byte>(source);
        string kind;
        switch (rng.Next(6))
        {
            case 0:
                kind = "bit-flip";
                for (var n = 1 + rng.Next(8); n > 0; n--)
                {
                    var at = Position(bytes.Count);
                    bytes[at] ^= (byte)(1 << rng.Next(8));
                }
                break;
            case 1:
                var fill = rng.Next(3);
                kind = fill switch { 0 => "overwrite-00", 1 => "overwrite-ff", _ => "overwrite-random" };
                for (var n = 1 + rng.Next(4); n > 0; n--)
                {
                    var at = Position(bytes.Count);
                    for (var j = at; j < Math.Min(bytes.Count, at + 1 + rng.Next(16)); j++)
                    {
                        bytes[j] = fill switch { 0 => 0x00, 1 => 0xFF, _ => (byte)rng.Next(256) };
                    }
                }
                break;
            case 2:
                kind = "truncate";
                var cut = Position(bytes.Count);
                bytes.RemoveRange(cut, bytes.Count - cut);
                break;
            case 3:
                kind = "insert-random";
                var chunk = new byte[1 + rng.Next(64)];
                rng.NextBytes(chunk);
                bytes.InsertRange(Position(bytes.Count), chunk);
                break;
            case 4:
                kind = "duplicate-chunk";
                var from = Position(bytes.Count);
                var length = 1 + rng.Next(Math.Min(256, bytes.Count - from));
                bytes.InsertRange(Position(bytes.Count), bytes.GetRange(from, length));
                break;
            default:
                kind = "delete-chunk";
                var start = Position(bytes.Count);
                bytes.RemoveRange(start, 1 + rng.Next(Math.Min(64, bytes.Count - start)));
                break;
        }
        mutant = [.. bytes];
        return kind;
    }

    // Values for length and size fields: zero, one, huge, "negative" (high bit set), near the real value.
    private static ulong LengthValue(Random rng, ulong real, ulong max) => rng.Next(8) switch
    {
        0 => 0,
        1 => 1,
        2 => max,
        3 => max / 2 + 1,
        4 => max / 2,
        5 => real + 1 + (ulong)rng.Next(64),
        6 => real > 0 ? real - 1 - (ulong)rng.Next((int)Math.Min(real, 64)) : 7,
        _ => (ulong)rng.NextInt64() & max,
    };

    // ---- safetensors ----

    private static byte[] SetSafetensorsHeaderLength(byte[] file, int header, Random rng)
    {
        var bytes = (byte[])file.Clone();
        var value = rng.Next(4) == 0 ? (ulong)file.Length - 8 + (ulong)rng.Next(3) : LengthValue(rng, (ulong)header, ulong.MaxValue);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        return bytes;
    }

    private static byte[] ReplaceSafetensorsJson(byte[] file, int header, Random rng)
    {
        var json = ReplaceJsonValue(file[8..(8 + header)], rng);
        var result = new byte[8 + json.Length + file.Length - 8 - header];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)json.Length);
        json.CopyTo(result, 8);
        file.AsSpan(8 + header).CopyTo(result.AsSpan(8 + json.Length));
        return result;
    }

    // ---- JSON ----

    private static readonly string[] OddJson =
    [
        "null", "true", "false", "0", "-1", "1", "0.5", "-0.0", "1e308", "-1e308", "1e400", "-1e400", "NaN", "Infinity", "-Infinity",
        "\"NaN\"", "\"Infinity\"", "\"-Infinity\"", "\"\"", "\"x\"", "\"\\u0000\"", "\"1e400\"", "[]", "{}", "[1, 2, 3]", "[[[]]]",
        "{\"a\": 1}", "2147483647", "2147483648", "-2147483649", "4294967296", "9223372036854775807", "9223372036854775808",
        "-9223372036854775809", "18446744073709551616", "1e20", "123456789012345678901234567890", "[-1]", "[0]", "[1e400]",
        "[\"a\"]", "[null]", "[2147483647, 2147483647, 2147483647]", "\"2026-13-45T99:99:99\"", "\"F32\"", "\"I64\"", "\"BOOL\"", "\"Q9\"",
    ];

    private const string Placeholder = "\"__updp_fuzz__\"";

    // Replaces one value anywhere in the document (or drops or duplicates a key) with an odd one; the
    // result is text, so values that are not JSON (NaN) and duplicate keys can be written.
    private static byte[] ReplaceJsonValue(byte[] json, Random rng)
    {
        var root = JsonNode.Parse(json)!;
        var slots = new List<(JsonNode Parent, object Key)>();
        Collect(root, slots);
        var (parent, key) = slots[rng.Next(slots.Count)];
        var odd = OddJson[rng.Next(OddJson.Length)];
        var action = rng.Next(10);
        string text;
        if (action == 0 && parent is JsonObject drop)
        {
            drop.Remove((string)key);
            text = root.ToJsonString();
        }
        else if (action == 1 && parent is JsonObject twice)
        {
            // A duplicate key: the same name again with an odd value.
            var name = (string)key;
            twice.Add(name + "\u0001", JsonValue.Create("__updp_fuzz__"));
            text = root.ToJsonString().Replace($"\"{name}\\u0001\":{Placeholder}", $"\"{name}\":{odd}", StringComparison.Ordinal);
        }
        else
        {
            if (parent is JsonObject o)
            {
                o[(string)key] = JsonValue.Create("__updp_fuzz__");
            }
            else
            {
                ((JsonArray)parent)[(int)key] = JsonValue.Create("__updp_fuzz__");
            }
            text = root.ToJsonString().Replace(Placeholder, odd, StringComparison.Ordinal);
        }
        return Encoding.UTF8.GetBytes(text);
    }

    private static void Collect(JsonNode node, List<(JsonNode, object)> slots)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (k, v) in o.ToList())
                {
                    slots.Add((o, k));
                    if (v is not null)
                    {
                        Collect(v, slots);
                    }
                }
                break;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++)
                {
                    slots.Add((a, i));
                    if (a[i] is { } v)
                    {
                        Collect(v, slots);
                    }
                }
                break;
        }
    }

    // ---- idx ----

    // Sets the magic number or one dimension to an odd value.
    private static byte[] SetIdxField(byte[] file, int headerLength, Random rng)
    {
        var bytes = (byte[])file.Clone();
        var field = rng.Next(headerLength / 4);
        var real = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(4 * field));
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4 * field), (uint)LengthValue(rng, real, uint.MaxValue));
        return bytes;
    }

    // ---- zip ----

    // Sets a count, size, offset or length field of the end records, a central directory header or a local header.
    private static byte[] SetZipField(byte[] file, int directoryAt, Random rng)
    {
        var bytes = (byte[])file.Clone();
        var headers = new List<(int At, uint Signature)>();
        for (var i = 0; i + 4 <= bytes.Length; i++)
        {
            if (bytes[i] == 'P' && bytes[i + 1] == 'K')
            {
                var signature = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(i));
                if (signature is 0x04034b50 or 0x02014b50 or 0x06054b50 or 0x06064b50 or 0x07064b50)
                {
                    headers.Add((i, signature));
                }
            }
        }
        // Mostly the central directory and end records, sometimes a local header.
        var late = headers.Where(h => h.At >= directoryAt).ToList();
        var (at, sig) = rng.Next(3) == 0 ? headers[rng.Next(headers.Count)] : late[rng.Next(late.Count)];
        // Offsets and sizes of the count, size, offset and length fields of each record.
        (int Offset, int Size)[] fields = sig switch
        {
            0x04034b50 => [(18, 4), (22, 4), (26, 2), (28, 2)],
            0x02014b50 => [(10, 2), (20, 4), (24, 4), (28, 2), (30, 2), (32, 2), (42, 4)],
            0x06054b50 => [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)],
            0x06064b50 => [(4, 8), (24, 8), (32, 8), (40, 8), (48, 8)],
            _ => [(8, 8), (16, 4)],
        };
        var (offset, size) = fields[rng.Next(fields.Length)];
        var span = bytes.AsSpan(at + offset);
        switch (size)
        {
            case 2:
                BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)LengthValue(rng, BinaryPrimitives.ReadUInt16LittleEndian(span), ushort.MaxValue));
                break;
            case 4:
                BinaryPrimitives.WriteUInt32LittleEndian(span, (uint)LengthValue(rng, BinaryPrimitives.ReadUInt32LittleEndian(span), uint.MaxValue));
                break;
            default:
                BinaryPrimitives.WriteUInt64LittleEndian(span, LengthValue(rng, BinaryPrimitives.ReadUInt64LittleEndian(span), ulong.MaxValue));
                break;
        }
        return bytes;
    }

    // Changes the pickle in place and writes its new CRC to the central directory, so that the
    // unpickler, not the CRC check, meets the damage: opcode arguments (lengths, integers, memo
    // indices) set to odd values, or bytes flipped or overwritten.
    private static byte[] MutatePickle(byte[] file, int pickleAt, int pickleLength, int crcAt, Random rng)
    {
        var bytes = (byte[])file.Clone();
        var pickle = bytes.AsSpan(pickleAt, pickleLength);
        // Opcodes with a 1- or 4-byte argument: BININT1 K, BININT J, BINUNICODE X, BINPUT q, LONG_BINPUT r, BINGET h, LONG_BINGET j, BININT2 M.
        var candidates = new List<int>();
        for (var i = 0; i < pickle.Length - 5; i++)
        {
            if (pickle[i] is (byte)'K' or (byte)'J' or (byte)'X' or (byte)'q' or (byte)'r' or (byte)'h' or (byte)'j' or (byte)'M')
            {
                candidates.Add(i);
            }
        }
        for (var n = 1 + rng.Next(3); n > 0; n--)
        {
            var at = candidates[rng.Next(candidates.Count)];
            switch (rng.Next(4))
            {
                case 0:
                    pickle[at + 1] = (byte)LengthValue(rng, pickle[at + 1], byte.MaxValue);
                    break;
                case 1:
                    BinaryPrimitives.WriteUInt32LittleEndian(pickle[(at + 1)..], (uint)LengthValue(rng, BinaryPrimitives.ReadUInt32LittleEndian(pickle[(at + 1)..]), uint.MaxValue));
                    break;
                case 2:
                    pickle[rng.Next(pickle.Length)] ^= (byte)(1 << rng.Next(8));
                    break;
                default:
                    pickle[rng.Next(pickle.Length)] = (byte)rng.Next(256);
                    break;
            }
        }
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(crcAt), Crc32.HashToUInt32(pickle));
        return bytes;
    }
}
