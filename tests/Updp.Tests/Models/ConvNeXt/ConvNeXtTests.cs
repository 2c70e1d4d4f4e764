using TorchSharp;
using Updp.Models;
using Updp.Models.ConvNeXt;
using static TorchSharp.torch;

namespace Updp.Tests.Models;

public class ConvNeXtTests
{
    [Theory]
    [InlineData("convnext_atto", 3_695_520)]
    [InlineData("convnext_tiny", 28_589_128)]
    public void ParameterCountsEqualTimms(string name, long expected)
    {
        using var model = ModelRegistry.Create(name);
        Assert.Equal(expected, ModelProfiler.CountParameters(model));
    }

    [Fact]
    public void ParameterNamesAndShapesFollowTimm()
    {
        using var atto = ModelRegistry.Create("convnext_atto");
        var shapes = atto.named_parameters().ToDictionary(p => p.name, p => string.Join(",", p.parameter.shape));
        Assert.Equal("40,3,4,4", shapes["stem.0.weight"]);
        Assert.Equal("40", shapes["stem.1.weight"]);
        Assert.Equal("40,1,7,7", shapes["stages.0.blocks.0.conv_dw.weight"]);
        Assert.Equal("160,40,1,1", shapes["stages.0.blocks.0.mlp.fc1.weight"]);
        Assert.Equal("40", shapes["stages.0.blocks.0.gamma"]);
        Assert.Equal("40", shapes["stages.1.downsample.0.weight"]); // LayerNorm2d over the input channels
        Assert.Equal("80,40,2,2", shapes["stages.1.downsample.1.weight"]);
        Assert.Equal("320", shapes["head.norm.weight"]);
        Assert.Equal("1000,320", shapes["head.fc.weight"]);

        using var tiny = ModelRegistry.Create("convnext_tiny");
        var tinyShapes = tiny.named_parameters().ToDictionary(p => p.name, p => string.Join(",", p.parameter.shape));
        Assert.Equal("384,96", tinyShapes["stages.0.blocks.0.mlp.fc1.weight"]);
        Assert.Equal("96", tinyShapes["stages.0.blocks.0.norm.weight"]);
    }

    [Fact]
    public void BlocksAreIndexedGloballyAcrossStages()
    {
        using var model = ModelRegistry.Create("convnext_atto");
        Assert.Equal(12, model.Blocks.Count);
        Assert.Equal(Enumerable.Range(0, 12), model.Blocks.Select(b => b.Index));
        Assert.Equal([0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3], model.Blocks.Select(b => b.Stage));
        Assert.Equal("stages.2.blocks.5", model.Blocks[9].Path);
    }

    [Fact]
    public void InitialisedWeightsFollowTimmsTruncatedNormal()
    {
        using var model = ModelRegistry.Create("convnext_atto");
        var p = model.named_parameters().ToDictionary(q => q.name, q => q.parameter);
        // timm's _init_weights: every Conv2d (the depthwise conv_dw too) and Linear, biases zero.
        foreach (var name in new[] { "stages.2.blocks.0.mlp.fc1.weight", "stages.1.blocks.1.conv_dw.weight", "stem.0.weight" })
        {
            Assert.InRange(p[name].std().item<float>(), 0.017, 0.023);
            Assert.InRange(p[name].mean().item<float>(), -0.003, 0.003);
        }
        Assert.Equal(0, p["stages.1.blocks.1.conv_dw.bias"].abs().max().item<float>());
    }

    [Fact]
    public void BothMlpLayoutsComputeTheSameFunction()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(1);
        var conv = new ConvNeXtBlock(8, convMlp: true, dropPath: 0, layerScaleInit: 0.5);
        var linear = new ConvNeXtBlock(8, convMlp: false, dropPath: 0, layerScaleInit: 0.5);
        using (no_grad())
        {
            foreach (var (name, p) in linear.named_parameters())
            {
                var src = conv.named_parameters().Single(q => q.name == name).parameter;
                p.copy_(src.reshape(p.shape));
            }
        }
        var x = randn(2, 8, 5, 5);
        Assert.True(conv.call(x).allclose(linear.call(x), rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void SmallInputForwardAndBackwardReachEveryParameter()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(0);
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto"));
        // layer scales start at 1e-6; larger ones make every gradient clearly non-zero
        using (no_grad())
        {
            foreach (var (name, p) in model.named_parameters().Where(p => p.name.EndsWith(".gamma", StringComparison.Ordinal)))
            {
                p.fill_(0.5);
            }
        }
        var logits = model.call(randn(4, 1, 32, 32));
        Assert.Equal([4L, 10L], logits.shape);
        nn.functional.cross_entropy(logits, tensor(new long[] { 0, 1, 2, 3 })).backward();
        foreach (var (name, p) in model.named_parameters())
        {
            Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"no gradient reached {name}");
        }
    }

    [Fact]
    public void ModelBuiltInsideADisposeScopeKeepsItsParameters()
    {
        ImageClassifier model;
        using (NewDisposeScope())
        {
            model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto"));
        }
        using (model)
        {
            Assert.All(model.named_parameters(), p => Assert.False(p.parameter.IsInvalid, $"{p.name} was disposed with the scope"));
            using var scope = NewDisposeScope();
            Assert.Equal([2L, 10L], model.call(randn(2, 1, 32, 32)).shape);
        }
    }

    [Fact]
    public void ProfileCountsMacsOfEveryBlock()
    {
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto"));
        var profile = ModelProfiler.Profile(model, 32);
        Assert.Equal(ModelProfiler.CountParameters(model), profile.Params);
        // Block 0 sees an 8×8×40 map: dw 7×7 (49 taps) plus two 40×160 matmuls per position.
        Assert.Equal(8L * 8 * 40 * 49 + 2L * 8 * 8 * 40 * 160, profile.Blocks[0].Macs);
        // Block 4 sees 2×2×160: only the central 3×3 taps reach an output on a 2×2 map.
        Assert.Equal(2L * 2 * 160 * 9 + 2L * 2 * 2 * 160 * 640, profile.Blocks[4].Macs);
        // Block 10 sees 1×1×320: the depthwise conv is one tap, a per-channel scale.
        Assert.Equal(320L + 2L * 320 * 1280, profile.Blocks[10].Macs);
        Assert.True(profile.Macs > profile.Blocks.Sum(b => b.Macs));
    }
}
