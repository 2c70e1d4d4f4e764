using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using Updp.Checkpoints;
using Updp.Models;
using static TorchSharp.torch;
using static Updp.Tests.Checkpoints.TestSupport;

namespace Updp.Tests.Checkpoints;

public class CheckpointSaveTests
{
    private static CheckpointMeta SampleMeta() => new()
    {
        Classes = Enumerable.Range(0, 10).Select(i => $"class{i}").ToList(),
        Epoch = 3,
        Metrics = new Dictionary<string, double> { ["val_acc"] = 0.8125, ["val_loss"] = double.NaN },
        Extra = new JsonObject { ["pruning"] = new JsonObject { ["removed"] = new JsonArray(1, 4) } },
    };

    [Fact]
    public void RoundTripIsBitExactAndKeepsTheSidecar()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        using var model = RandomAtto(seed: 1);
        var written = Checkpoint.Save(model, path, SampleMeta());

        Assert.Equal(["model.json", "model.safetensors"], dir.Files());
        var loaded = Checkpoint.Load(path);
        using var copy = loaded.Model;
        Assert.Equal(model.Config, copy.Config);
        Assert.False(copy.training);

        var meta = Assert.IsType<CheckpointMeta>(loaded.Meta);
        Assert.Equal(CheckpointMeta.CurrentFormatVersion, meta.FormatVersion);
        Assert.Equal(model.Config, meta.Model);
        Assert.Equal(SampleMeta().Classes, meta.Classes);
        Assert.Equal(3, meta.Epoch);
        Assert.Equal(0.8125, meta.Metrics["val_acc"]);
        Assert.True(double.IsNaN(meta.Metrics["val_loss"]));
        Assert.Equal(written.Created, meta.Created);
        Assert.Equal(written.WeightsId, meta.WeightsId);
        Assert.Equal("[1,4]", meta.Extra!["pruning"]!["removed"]!.ToJsonString());

        var expected = model.state_dict();
        var actual = copy.state_dict();
        Assert.Equal(expected.Keys, actual.Keys);
        foreach (var (name, t) in expected)
        {
            Assert.Equal(t.dtype, actual[name].dtype);
            Assert.Equal(t.shape, actual[name].shape);
            Assert.True(Bytes(t).AsSpan().SequenceEqual(Bytes(actual[name])), name);
        }

        model.eval();
        using var x = randn(2, 1, 32, 32, generator: new Generator(5));
        using var _ = no_grad();
        using var y0 = model.call(x);
        using var y1 = copy.call(x);
        Assert.True(Identical(y0, y1));
    }

    [Fact]
    public void SavedFileIsPlainSafetensors()
    {
        using var dir = new TempDir();
        var path = dir.File("m.safetensors");
        using var model = RandomAtto(seed: 2);
        var written = Checkpoint.Save(model, path);

        var (tensors, metadata, headerSize) = ParseSafetensors(path);
        Assert.Equal(0UL, headerSize % 8);
        Assert.Equal("pt", metadata["format"]);
        Assert.Equal(written.WeightsId, metadata["updp_weights_id"]);
        var state = model.state_dict();
        Assert.Equal(state.Keys.Order(StringComparer.Ordinal), tensors.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, t) in state)
        {
            Assert.Equal("F32", tensors[name].DType);
            Assert.Equal(t.shape, tensors[name].Shape);
            Assert.True(Bytes(t).AsSpan().SequenceEqual(tensors[name].Data), name);
        }
    }

    [Fact]
    public void WriteSafetensorsHandlesDTypesAndNonContiguousTensors()
    {
        using var dir = new TempDir();
        var path = dir.File("mixed.safetensors");
        using var matrix = arange(12, dtype: float32).reshape(3, 4);
        using var transposed = matrix.t();
        Assert.False(transposed.is_contiguous());
        var tensors = new Dictionary<string, Tensor>
        {
            ["transposed"] = transposed,
            ["steps"] = tensor(7L),
            ["half"] = tensor(new[] { 1.5f, -2f }).to_type(float16),
            ["mask"] = tensor(new[] { true, false, true }),
            ["empty"] = zeros(0, 3),
        };
        StateDict.WriteSafetensors(path, tensors);

        var (raw, _, _) = ParseSafetensors(path);
        Assert.Equal(["F32", "I64", "F16", "BOOL", "F32"], tensors.Keys.Select(k => raw[k].DType));
        Assert.Equal(new long[] { 4, 3 }, raw["transposed"].Shape);
        Assert.Equal(Array.Empty<long>(), raw["steps"].Shape);
        Assert.Equal(Bytes(transposed.contiguous()), raw["transposed"].Data);
        Assert.Equal(BitConverter.GetBytes(7L), raw["steps"].Data);

        var back = StateDict.Read(path);
        foreach (var (name, t) in tensors)
        {
            Assert.Equal(t.dtype, back[name].dtype);
            Assert.Equal(t.shape, back[name].shape);
            Assert.True(Identical(t, back[name]), name);
        }
    }

    [Fact]
    public void SavingOverAnExistingCheckpointReplacesIt()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        using var first = RandomAtto(seed: 3);
        using var second = RandomAtto(seed: 4);
        Checkpoint.Save(first, path, new CheckpointMeta { Epoch = 1 });
        Checkpoint.Save(second, path, new CheckpointMeta { Epoch = 2 });

        Assert.Equal(["model.json", "model.safetensors"], dir.Files());
        var loaded = Checkpoint.Load(path);
        using var model = loaded.Model;
        Assert.Equal(2, loaded.Meta!.Epoch);
        var name = "stages.2.blocks.1.mlp.fc1.weight";
        Assert.Equal(Bytes(second.state_dict()[name]), Bytes(model.state_dict()[name]));
    }

    [Fact]
    public void SaveCreatesMissingDirectories()
    {
        using var dir = new TempDir();
        var path = dir.File(Path.Combine("runs", "a", "best.safetensors"));
        using var model = RandomAtto(seed: 5);
        Checkpoint.Save(model, path);
        Assert.Equal(["runs", "runs/a", "runs/a/best.json", "runs/a/best.safetensors"], dir.Files());
    }

    [Fact]
    public void SaveRejectsAnotherExtension()
    {
        using var model = RandomAtto(seed: 6);
        Assert.Throws<ArgumentException>(() => Checkpoint.Save(model, "model.pt"));
    }

    [Fact]
    public void FailedSaveIntoADirectoryPathLeavesNothing()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("model.safetensors"));
        using var model = RandomAtto(seed: 7);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Save(model, dir.File("model.safetensors")));
        Assert.Contains("is a directory", e.Message);
        Assert.Equal(["model.safetensors"], dir.Files());
    }

    [Fact]
    public void FailedSaveWhereTheParentIsAFileLeavesNothing()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("notadir"), "x");
        using var model = RandomAtto(seed: 8);
        var path = Path.Combine(dir.File("notadir"), "model.safetensors");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Save(model, path));
        Assert.Contains(path, e.Message);
        Assert.Equal(["notadir"], dir.Files());
    }

    [Fact]
    public void FailureWhileWritingKeepsTheEarlierCheckpointAndRemovesTemporaryFiles()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        using var good = RandomAtto(seed: 9);
        Checkpoint.Save(good, path, new CheckpointMeta { Epoch = 1 });
        var weightsBefore = File.ReadAllBytes(path);
        var sidecarBefore = File.ReadAllBytes(Checkpoint.SidecarPath(path));

        // The second tensor has no data to write (meta device): the save fails after the temporary
        // weights file already holds the header and the first tensor.
        using var bad = new UnwritableModel();
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Save(bad, path, new CheckpointMeta { Epoch = 2 }));
        Assert.Contains(path, e.Message);
        Assert.Contains("meta", e.Message);
        Assert.DoesNotContain("\n", e.Message);

        Assert.Equal(["model.json", "model.safetensors"], dir.Files());
        Assert.Equal(weightsBefore, File.ReadAllBytes(path));
        Assert.Equal(sidecarBefore, File.ReadAllBytes(Checkpoint.SidecarPath(path)));
        using var reloaded = Checkpoint.Load(path).Model;
        Assert.Equal(Bytes(good.state_dict()["head.fc.weight"]), Bytes(reloaded.state_dict()["head.fc.weight"]));
    }

    [Fact]
    public void APairFromDifferentSavesIsRefused()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        var sidecar = Checkpoint.SidecarPath(path);
        using var model = RandomAtto(seed: 10);
        Checkpoint.Save(model, path);
        var oldSidecar = File.ReadAllBytes(sidecar);
        Checkpoint.Save(model, path);
        // What a crash between the weights rename and the sidecar rename leaves behind.
        File.WriteAllBytes(sidecar, oldSidecar);

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("does not belong", e.Message);
        Assert.Contains(path, e.Message);
    }

    /// <summary>A classifier whose second tensor lives on the meta device and so cannot be written.</summary>
    private sealed class UnwritableModel : ImageClassifier
    {
#pragma warning disable IDE1006
        private readonly Parameter weight;
        private readonly Parameter ghost;
#pragma warning restore IDE1006

        public UnwritableModel() : base(nameof(UnwritableModel), new ModelConfig { Name = "convnext_atto" })
        {
            weight = new Parameter(randn(256, 256));
            ghost = new Parameter(empty([16], device: META));
            RegisterComponents();
        }

        public override IReadOnlyList<PrunableBlock> Blocks => [];

        public override Tensor ForwardFeatures(Tensor x) => x;

        public override Tensor forward(Tensor x) => x;
    }
}
