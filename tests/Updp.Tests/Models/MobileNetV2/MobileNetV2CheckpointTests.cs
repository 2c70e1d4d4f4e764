using TorchSharp;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Models.MobileNetV2;
using static TorchSharp.torch;
using static Updp.Tests.Checkpoints.TestSupport;

namespace Updp.Tests.Models;

/// <summary>MobileNetV2 state dicts written by PyTorch (tools/make_mobilenetv2_fixture.py) under torchvision's and timm's names.</summary>
public class MobileNetV2CheckpointTests
{
    private const string TorchvisionFixture = "mobilenetv2_050_torchvision.pt";
    private const string TimmFixture = "mobilenetv2_050_timm.pt";
    private const string IoFixture = "mobilenetv2_050_io.safetensors";

    private static readonly ModelConfig FixtureConfig = new() { Name = "mobilenetv2_050", InChans = 1, NumClasses = 10 };

    private static float LogitError(ImageClassifier model)
    {
        var io = StateDict.Read(Fixture(IoFixture));
        try
        {
            using var _ = no_grad();
            using var logits = model.call(io["input"]);
            Assert.Equal(io["logits"].shape, logits.shape);
            Assert.True(MaxAbsDiff(io["logits"], zeros_like(io["logits"])) > 0.5, "the fixture's logits are too small to tell models apart");
            return MaxAbsDiff(logits, io["logits"]);
        }
        finally
        {
            foreach (var t in io.Values)
            {
                t.Dispose();
            }
        }
    }

    [Theory]
    [InlineData(TorchvisionFixture)]
    [InlineData(TimmFixture)]
    public void PyTorchStateDictGivesPyTorchsLogits(string fixture)
    {
        var loaded = Checkpoint.Load(Fixture(fixture), "mobilenetv2_050");
        using var model = loaded.Model;
        Assert.Null(loaded.Meta);
        Assert.Equal(FixtureConfig, model.Config);
        Assert.False(model.training);
        Assert.InRange(LogitError(model), 0f, 1e-4f);
    }

    [Fact]
    public void TheFixturesHoldTheSameTensorsUnderTheTwoNamings()
    {
        var tv = StateDict.Read(Fixture(TorchvisionFixture));
        var timm = StateDict.Read(Fixture(TimmFixture));
        Assert.Contains("blocks.3.2.conv_dw.weight", timm.Keys);
        Assert.Contains("features.9.conv.1.0.weight", tv.Keys);
        Assert.Equal(tv.Count, timm.Count);
        Assert.All(timm, kv => Assert.True(Identical(kv.Value, tv[MobileNetV2.TimmKey(kv.Key)]), kv.Key));
    }

    [Fact]
    public void LoadedWeightsAreTheFilesBitForBit()
    {
        using var model = Checkpoint.Load(Fixture(TimmFixture), "mobilenetv2_050").Model;
        var tv = StateDict.Read(Fixture(TorchvisionFixture));
        var ours = model.state_dict();
        Assert.Equal(tv.Keys.Order(StringComparer.Ordinal), ours.Keys.Order(StringComparer.Ordinal));
        Assert.All(tv, kv => Assert.True(Identical(kv.Value, ours[kv.Key]), kv.Key));
    }

    [Fact]
    public void WrongWidthNamesTheTensors()
    {
        var path = Fixture(TorchvisionFixture);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, "mobilenetv2_100"));
        Assert.Contains(path, e.Message);
        Assert.Contains("features.0.0.weight: model [32, 1, 3, 3], checkpoint [16, 1, 3, 3]", e.Message);
    }

    [Fact]
    public void SavedAndReloadedWithASidecarTheSmallInputStemSurvives()
    {
        using var dir = new TempDir();
        var path = dir.File("mbv2.safetensors");
        using (var model = ModelRegistry.Create(ModelConfig.SmallInput("mobilenetv2_100")))
        {
            Checkpoint.Save(model, path);
        }
        using var loaded = Checkpoint.Load(path).Model;
        Assert.Equal(1, loaded.Config.StemStride);
        Assert.IsType<MobileNetV2>(loaded);
    }

    [Fact]
    public void SafetensorsWhoseHeaderLengthStartsWithAPickleMarkerIsRead()
    {
        // Found with a merged mobilenetv2_050 checkpoint: a header length whose low byte is 0x80 (the
        // pickle protocol marker) was taken for PyTorch's legacy format. Names of growing length
        // shift the header length until its low byte is 0x80.
        using var dir = new TempDir();
        var path = dir.File("marker.safetensors");
        using var t = arange(6, dtype: float32).view(2, 3);
        var found = false;
        for (var n = 1; n < 300 && !found; n++)
        {
            StateDict.WriteSafetensors(path, new Dictionary<string, Tensor> { [new string('w', n)] = t });
            found = File.ReadAllBytes(path)[0] == 0x80;
        }
        Assert.True(found);
        var read = StateDict.Read(path);
        Assert.True(Identical(read.Values.Single(), t));
    }
}
