using TorchSharp;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Models.DeiT;
using static TorchSharp.torch;
using static Updp.Tests.Checkpoints.TestSupport;

namespace Updp.Tests.Models;

/// <summary>DeiT state dicts with timm's names written by PyTorch (tools/make_deit_fixture.py) and by us.</summary>
public class DeiTForeignCheckpointTests
{
    private const string Fixture_ = "deit_reduced.pt";
    private const string IoFixture_ = "deit_reduced_io.safetensors";

    // The fixture's reduced architecture (deit_tiny at 32×32 would be a 21 MB fixture); the model
    // name only selects the family's state-dict adapter, the factory builds the reduced model.
    private static readonly CheckpointLoadOptions Reduced = new() { CreateModel = (c, _) => new DeiT(c, new DeiT.Architecture(48, 3, 3)) };

    [Fact]
    public void OfficialLayoutPtGivesPyTorchsLogits()
    {
        var loaded = Checkpoint.Load(Fixture(Fixture_), "deit_tiny_patch16_224", Reduced);
        using var model = loaded.Model;
        Assert.Null(loaded.Meta);
        Assert.Equal(new ModelConfig { Name = "deit_tiny_patch16_224", InChans = 1, NumClasses = 10, StemStride = 4, ImgSize = 32 }, model.Config);
        Assert.False(model.training);

        var io = StateDict.Read(Fixture(IoFixture_));
        try
        {
            using var _ = no_grad();
            using var logits = model.call(io["input"]);
            Assert.Equal([4L, 10], logits.shape);
            Assert.InRange(MaxAbsDiff(logits, io["logits"]), 0f, 1e-4f);
            // The logits are not all alike, so agreement means something.
            Assert.True(io["logits"].std().item<float>() > 0.3);
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
    public void ImageNetShapedStateDictInfersTimmDefaults()
    {
        using var dir = new TempDir();
        var path = dir.File("timm_deit_tiny.safetensors");
        using var timmLike = ModelRegistry.Create("deit_tiny_patch16_224");
        DeiTTestSupport.Randomize(timmLike, 21);
        StateDict.WriteSafetensors(path, timmLike.state_dict());

        using var model = Checkpoint.Load(path, "deit_tiny_patch16_224").Model;
        Assert.Equal(new ModelConfig { Name = "deit_tiny_patch16_224", InChans = 3, NumClasses = 1000, StemStride = 16, ImgSize = 224 }, model.Config);
        Assert.Equal(Bytes(timmLike.state_dict()["pos_embed"]), Bytes(model.state_dict()["pos_embed"]));
        Assert.Equal(Bytes(timmLike.state_dict()["blocks.11.mlp.fc2.weight"]), Bytes(model.state_dict()["blocks.11.mlp.fc2.weight"]));
    }

    [Fact]
    public void WrongWidthNamesTheTensors()
    {
        var path = Fixture(Fixture_);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, "deit_tiny_patch16_224"));
        Assert.Contains(path, e.Message);
        Assert.Contains("patch_embed.proj.weight: model [192, 1, 4, 4], checkpoint [48, 1, 4, 4]", e.Message);
    }

    [Fact]
    public void APosEmbedThatIsNoPatchGridIsAClearError()
    {
        using var dir = new TempDir();
        var path = dir.File("odd.safetensors");
        var sd = StateDict.Read(Fixture(Fixture_));
        sd["pos_embed"] = zeros(1, 60, 48);
        StateDict.WriteSafetensors(path, sd);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, "deit_tiny_patch16_224", Reduced));
        Assert.Contains("pos_embed has shape [1, 60, 48]", e.Message);
    }
}
