using TorchSharp;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Models.ConvNeXt;
using static TorchSharp.torch;
using static Updp.Tests.Checkpoints.TestSupport;

namespace Updp.Tests.Checkpoints;

/// <summary>State dicts written by PyTorch (tools/make_convnext_fixture.py) and other bare state dicts.</summary>
public class ForeignCheckpointTests
{
    private const float Tolerance = 1e-4f;

    private static float LogitError(ImageClassifier model, string expectedKey)
    {
        var io = StateDict.Read(Fixture(IoFixture));
        try
        {
            using var _ = no_grad();
            using var logits = model.call(io["input"]);
            Assert.Equal(io[expectedKey].shape, logits.shape);
            return MaxAbsDiff(logits, io[expectedKey]);
        }
        finally
        {
            foreach (var t in io.Values)
            {
                t.Dispose();
            }
        }
    }

    [Fact]
    public void PythonWrittenSafetensorsIsRead()
    {
        var io = StateDict.Read(Fixture(IoFixture));
        Assert.Equal(new long[] { 4, 1, 32, 32 }, io["input"].shape);
        Assert.Equal(new long[] { 4, 10 }, io["logits_convmlp"].shape);
        Assert.Equal(ScalarType.Float32, io["logits_linear"].dtype);
    }

    [Fact]
    public void ConvMlpLayoutPtGivesPyTorchsLogits()
    {
        var loaded = Checkpoint.Load(Fixture(ConvMlpFixture), "convnext_atto");
        using var model = loaded.Model;
        Assert.Null(loaded.Meta);
        Assert.Equal(new ModelConfig { Name = "convnext_atto", InChans = 1, NumClasses = 10, StemStride = 2 }, model.Config);
        Assert.False(model.training);
        Assert.InRange(LogitError(model, "logits_convmlp"), 0f, Tolerance);
    }

    [Fact]
    public void LinearLayoutNestedPtWithDataParallelPrefixGivesPyTorchsLogits()
    {
        var loaded = Checkpoint.Load(Fixture(LinearFixture), "convnext_atto");
        using var model = loaded.Model;
        Assert.Equal(new ModelConfig { Name = "convnext_atto", InChans = 1, NumClasses = 10, StemStride = 2 }, model.Config);
        Assert.InRange(LogitError(model, "logits_linear"), 0f, Tolerance);
    }

    [Fact]
    public void ReadGivesTheFilesOwnNamesAndShapes()
    {
        var conv = StateDict.Read(Fixture(ConvMlpFixture));
        var linear = StateDict.Read(Fixture(LinearFixture));
        Assert.Equal(new long[] { 160, 40, 1, 1 }, conv["stages.0.blocks.0.mlp.fc1.weight"].shape);
        Assert.Equal(new long[] { 160, 40 }, linear["module.stages.0.blocks.0.mlp.fc1.weight"].shape);
        Assert.Equal(conv.Count, linear.Count);
        Assert.All(linear.Keys, k => Assert.StartsWith("module.", k));
        using var reshaped = linear["module.stages.2.blocks.5.mlp.fc2.weight"].reshape(160, 640, 1, 1);
        Assert.True(Identical(reshaped, conv["stages.2.blocks.5.mlp.fc2.weight"]));
    }

    [Fact]
    public void LinearLayoutLoadsIntoALinearLayoutModel()
    {
        // convnext_tiny has Linear MLPs; a one-block module of that layout stands in for it.
        using var block = new ConvNeXtBlock(40, convMlp: false, dropPath: 0);
        var conv = StateDict.Read(Fixture(ConvMlpFixture));
        var prefix = "stages.0.blocks.1.";
        var slice = conv.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key[prefix.Length..], kv => kv.Value);
        StateDict.LoadInto(block, slice, "slice");
        var fc1 = block.state_dict()["mlp.fc1.weight"];
        Assert.Equal(new long[] { 160, 40 }, fc1.shape);
        using var flat = slice["mlp.fc1.weight"].flatten(1);
        Assert.True(Identical(fc1, flat));
    }

    [Fact]
    public void BareSafetensorsLoadsGivenTheModelName()
    {
        using var dir = new TempDir();
        var path = dir.File("converted.safetensors");
        var sd = StateDict.Read(Fixture(ConvMlpFixture));
        StateDict.WriteSafetensors(path, sd);

        var loaded = Checkpoint.Load(path, "convnext_atto");
        using var model = loaded.Model;
        Assert.Null(loaded.Meta);
        Assert.Equal(2, model.Config.StemStride);
        Assert.InRange(LogitError(model, "logits_convmlp"), 0f, Tolerance);
    }

    [Fact]
    public void ImageNetShapedStateDictInfersTimmDefaults()
    {
        using var dir = new TempDir();
        var path = dir.File("timm_atto.safetensors");
        using var timmLike = ModelRegistry.Create("convnext_atto");
        Pruning.PruningTestSupport.Randomize(timmLike, 11);
        StateDict.WriteSafetensors(path, timmLike.state_dict());

        using var model = Checkpoint.Load(path, "convnext_atto").Model;
        Assert.Equal(new ModelConfig { Name = "convnext_atto", InChans = 3, NumClasses = 1000, StemStride = 4 }, model.Config);
        Assert.Equal(Bytes(timmLike.state_dict()["stages.3.blocks.1.gamma"]), Bytes(model.state_dict()["stages.3.blocks.1.gamma"]));
    }

    [Fact]
    public void BareStateDictWithoutModelNameIsAClearError()
    {
        var path = Fixture(ConvMlpFixture);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("model name", e.Message);
        Assert.Equal(path, e.FilePath);
    }

    [Fact]
    public void UnknownModelNameIsAClearError()
    {
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(Fixture(ConvMlpFixture), "convnext_huge"));
        Assert.Contains("unknown model 'convnext_huge'", e.Message);
        Assert.Contains("convnext_atto", e.Message);
    }

    [Fact]
    public void WrongModelForTheStateDictNamesTheTensors()
    {
        var path = Fixture(ConvMlpFixture);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, "convnext_femto"));
        Assert.Contains(path, e.Message);
        Assert.Contains("stem.0.weight: model [48, 1, 2, 2], checkpoint [40, 1, 2, 2]", e.Message);
    }

    [Fact]
    public void ModelNameMustAgreeWithTheSidecar()
    {
        using var dir = new TempDir();
        var path = dir.File("model.safetensors");
        using var model = RandomAtto(seed: 12);
        Checkpoint.Save(model, path);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, "convnext_pico"));
        Assert.Contains("convnext_atto", e.Message);
        using var same = Checkpoint.Load(path, "convnext_atto").Model;
    }

    [Fact]
    public void ConfigureAdjustsTheConfigurationBeforeBuilding()
    {
        var options = new CheckpointLoadOptions { Configure = c => c with { DropPathRate = 0.1 } };
        using var model = Checkpoint.Load(Fixture(ConvMlpFixture), "convnext_atto", options).Model;
        Assert.Equal(0.1, model.Config.DropPathRate);
    }
}
