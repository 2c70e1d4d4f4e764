using System.Buffers.Binary;
using System.Text;
using TorchSharp;
using TorchSharp.Modules;
using Updp.Checkpoints;
using static TorchSharp.torch;
using static Updp.Tests.Checkpoints.TestSupport;

namespace Updp.Tests.Checkpoints;

public class StateDictTests
{
    private const string Source = "some/checkpoint.pt";

    private static Dictionary<string, Tensor> FixtureDict() => StateDict.Read(Fixture(ConvMlpFixture));

    private static CheckpointException LoadFails(Dictionary<string, Tensor> sd)
    {
        using var model = RandomAtto(seed: 20);
        var before = Bytes(model.state_dict()["head.fc.weight"]);
        var e = Assert.Throws<CheckpointException>(() => StateDict.LoadInto(model, sd, Source));
        Assert.Contains(Source, e.Message);
        Assert.Equal(Source, e.FilePath);
        // Nothing is copied unless everything fits.
        Assert.Equal(before, Bytes(model.state_dict()["head.fc.weight"]));
        return e;
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        var sd = FixtureDict();
        sd.Remove("stages.2.blocks.3.mlp.fc1.weight");
        var e = LoadFails(sd);
        Assert.Contains("missing from the checkpoint (1)", e.Message);
        Assert.Contains("stages.2.blocks.3.mlp.fc1.weight [640, 160, 1, 1]", e.Message);
    }

    [Fact]
    public void UnexpectedTensorIsNamed()
    {
        var sd = FixtureDict();
        sd["head.pre_logits.fc.weight"] = zeros(5, 320);
        var e = LoadFails(sd);
        Assert.Contains("unexpected in the checkpoint (1)", e.Message);
        Assert.Contains("head.pre_logits.fc.weight [5, 320]", e.Message);
    }

    [Fact]
    public void WrongShapeIsNamedWithBothShapes()
    {
        var sd = FixtureDict();
        sd["head.fc.weight"] = zeros(11, 320);
        sd["stages.1.blocks.0.gamma"] = zeros(80, 2);
        var e = LoadFails(sd);
        Assert.Contains("wrong shape or type (2)", e.Message);
        Assert.Contains("head.fc.weight: model [10, 320], checkpoint [11, 320]", e.Message);
        Assert.Contains("stages.1.blocks.0.gamma: model [80], checkpoint [80, 2]", e.Message);
    }

    [Fact]
    public void IntegerDataForAFloatParameterIsRefused()
    {
        var sd = FixtureDict();
        sd["head.fc.bias"] = zeros(new long[] { 10 }, dtype: int64);
        var e = LoadFails(sd);
        Assert.Contains("head.fc.bias: model Float32, checkpoint Int64", e.Message);
    }

    [Fact]
    public void LongListsAreCapped()
    {
        var sd = FixtureDict().Where(kv => !kv.Key.StartsWith("stages.2.", StringComparison.Ordinal)).ToDictionary();
        var e = LoadFails(sd);
        Assert.Contains("missing from the checkpoint (", e.Message);
        Assert.Contains("more", e.Message);
        Assert.True(e.Message.Split('\n').Length < 30, e.Message);
    }

    [Fact]
    public void TrailingSingletonRuleIsExact()
    {
        Assert.True(StateDict.SameUpToTrailingOnes([4, 3], [4, 3, 1, 1]));
        Assert.True(StateDict.SameUpToTrailingOnes([4, 3, 1, 1], [4, 3]));
        Assert.True(StateDict.SameUpToTrailingOnes([], [1]));
        Assert.False(StateDict.SameUpToTrailingOnes([4, 3], [1, 4, 3]));
        Assert.False(StateDict.SameUpToTrailingOnes([4, 3], [3, 4]));
        Assert.False(StateDict.SameUpToTrailingOnes([4, 3, 2], [4, 3]));
    }

    [Fact]
    public void ConvWeightsLoadIntoLinearAndBack()
    {
        using var linear = new Holder(nn.Linear(3, 4));
        using var conv = new Holder(nn.Conv2d(3, 4, 1));
        using var w = arange(12, dtype: float32).reshape(4, 3);
        using var b = arange(4, dtype: float32);

        StateDict.LoadInto(conv, new Dictionary<string, Tensor> { ["layer.weight"] = w, ["layer.bias"] = b }, "linear-layout");
        Assert.Equal(new long[] { 4, 3, 1, 1 }, conv.state_dict()["layer.weight"].shape);
        using var back = conv.state_dict()["layer.weight"].reshape(4, 3);
        Assert.True(Identical(back, w));

        StateDict.LoadInto(linear, conv.state_dict(), "conv-layout");
        Assert.True(Identical(linear.state_dict()["layer.weight"], w));
    }

    [Fact]
    public void MapKeyRenamesAndDrops()
    {
        using var holder = new Holder(nn.Linear(3, 4));
        var sd = new Dictionary<string, Tensor>
        {
            ["fc.weight"] = ones(4, 3),
            ["fc.bias"] = ones(4),
            ["num_batches_tracked"] = tensor(3L),
        };
        StateDict.LoadInto(holder, sd, "mapped", k => k.StartsWith("fc.", StringComparison.Ordinal) ? "layer." + k[3..] : null);
        Assert.Equal(12f, holder.state_dict()["layer.weight"].sum().item<float>());

        var e = Assert.Throws<CheckpointException>(() => StateDict.MapKeys(sd, _ => "same", "mapped"));
        Assert.Contains("both map to 'same'", e.Message);
    }

    [Fact]
    public void StripPrefixOnlyWhenEveryKeyHasIt()
    {
        using var t = ones(1);
        var all = new Dictionary<string, Tensor> { ["module.a"] = t, ["module.b"] = t };
        var some = new Dictionary<string, Tensor> { ["module.a"] = t, ["b"] = t };
        Assert.Equal(["a", "b"], StateDict.StripPrefix(all, "module.").Keys.Order());
        Assert.Equal(["b", "module.a"], StateDict.StripPrefix(some, "module.").Keys.Order(StringComparer.Ordinal));
    }

    public static TheoryData<string> RandomFileNames => new() { "junk.safetensors", "junk.pt", "junk.bin" };

    [Theory]
    [MemberData(nameof(RandomFileNames))]
    public void RandomBytesAreACheckpointErrorNamingTheFile(string name)
    {
        using var dir = new TempDir();
        var path = dir.File(name);
        var bytes = new byte[4096];
        new Random(1).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<CheckpointException>(() => StateDict.Read(path));
        Assert.Contains(path, e.Message);
        Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, "convnext_atto"));
    }

    [Fact]
    public void TruncatedSafetensorsIsACheckpointError()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        using var model = RandomAtto(seed: 21);
        Checkpoint.Save(model, path);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length - 100)]);

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("truncated", e.Message);

        File.WriteAllBytes(path, bytes[..20]);
        e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void TruncatedPtIsACheckpointError()
    {
        using var dir = new TempDir();
        var path = dir.File("model.pt");
        var bytes = File.ReadAllBytes(Fixture(ConvMlpFixture));
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, "convnext_atto"));
        Assert.Contains(path, e.Message);
        Assert.Contains("PyTorch", e.Message);
    }

    [Fact]
    public void EmptyMissingAndLegacyFilesAreCheckpointErrors()
    {
        using var dir = new TempDir();
        var empty = dir.File("empty.safetensors");
        File.WriteAllBytes(empty, []);
        Assert.Contains("is empty", Assert.Throws<CheckpointException>(() => StateDict.Read(empty)).Message);

        var missing = dir.File("missing.pt");
        Assert.Contains("does not exist", Assert.Throws<CheckpointException>(() => Checkpoint.Load(missing, "convnext_atto")).Message);
        Assert.Throws<CheckpointException>(() => StateDict.Read(missing));

        var legacy = dir.File("legacy.pth");
        File.WriteAllBytes(legacy, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20]);
        Assert.Contains("legacy", Assert.Throws<CheckpointException>(() => StateDict.Read(legacy)).Message);
    }

    [Fact]
    public void MalformedSafetensorsHeadersAreRejected()
    {
        using var dir = new TempDir();
        var path = dir.File("bad.safetensors");
        void Write(string header, int dataBytes)
        {
            var h = Encoding.UTF8.GetBytes(header);
            var bytes = new byte[8 + h.Length + dataBytes];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)h.Length);
            h.CopyTo(bytes, 8);
            File.WriteAllBytes(path, bytes);
        }

        Write("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8);
        Assert.Equal(new long[] { 2 }, StateDict.Read(path)["a"].shape);

        (string Header, int Data, string Expect)[] cases =
        [
            ("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "needs 12 bytes"),
            ("""{"a":{"dtype":"X9","shape":[2],"data_offsets":[0,8]}}""", 8, "unsupported dtype"),
            ("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12, "after the last tensor"),
            ("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, "gap or overlap"),
            ("""{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", 8, "invalid shape"),
            ("""{"a":[1,2]""", 0, "not valid JSON"),
        ];
        foreach (var (header, data, expect) in cases)
        {
            Write(header, data);
            var e = Assert.Throws<CheckpointException>(() => StateDict.Read(path));
            Assert.Contains(expect, e.Message);
            Assert.Contains(path, e.Message);
        }
    }

    [Fact]
    public void CorruptOrForeignSidecarIsACheckpointErrorNamingIt()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        var sidecar = Checkpoint.SidecarPath(path);
        using var model = RandomAtto(seed: 22);
        Checkpoint.Save(model, path);

        File.WriteAllText(sidecar, "{ not json");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains(sidecar, e.Message);

        File.WriteAllText(sidecar, """{"architectures": ["X"]}""");
        e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("not an Updp checkpoint sidecar", e.Message);

        File.WriteAllText(sidecar, """{"format_version": 99, "model": {"name": "convnext_atto"}}""");
        e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("format version 99", e.Message);
    }

    /// <summary>Holds one layer under the name <c>layer</c>.</summary>
    private sealed class Holder : nn.Module
    {
#pragma warning disable IDE1006
        private readonly nn.Module layer;
#pragma warning restore IDE1006

        public Holder(nn.Module layer) : base(nameof(Holder))
        {
            this.layer = layer;
            RegisterComponents();
        }
    }
}
