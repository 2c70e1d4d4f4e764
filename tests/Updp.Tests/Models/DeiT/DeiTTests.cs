using TorchSharp;
using Updp.Models;
using Updp.Models.DeiT;
using Updp.Tests.Pruning;
using static TorchSharp.torch;

namespace Updp.Tests.Models;

public class DeiTTests
{
    [Theory]
    [InlineData("deit_tiny_patch16_224", 5_717_416)]
    [InlineData("deit_small_patch16_224", 22_050_664)]
    public void ParameterCountsEqualTimms(string name, long expected)
    {
        using var model = ModelRegistry.Create(name);
        Assert.Equal(expected, ModelProfiler.CountParameters(model));
    }

    [Fact]
    public void ParameterNamesAndShapesFollowTimm()
    {
        using var tiny = ModelRegistry.Create("deit_tiny_patch16_224");
        var shapes = tiny.named_parameters().ToDictionary(p => p.name, p => string.Join(",", p.parameter.shape));
        Assert.Equal("1,1,192", shapes["cls_token"]);
        Assert.Equal("1,197,192", shapes["pos_embed"]);
        Assert.Equal("192,3,16,16", shapes["patch_embed.proj.weight"]);
        Assert.Equal("192", shapes["blocks.0.norm1.weight"]);
        Assert.Equal("576,192", shapes["blocks.0.attn.qkv.weight"]);
        Assert.Equal("576", shapes["blocks.0.attn.qkv.bias"]);
        Assert.Equal("192,192", shapes["blocks.0.attn.proj.weight"]);
        Assert.Equal("192", shapes["blocks.11.norm2.bias"]);
        Assert.Equal("768,192", shapes["blocks.11.mlp.fc1.weight"]);
        Assert.Equal("192,768", shapes["blocks.11.mlp.fc2.weight"]);
        Assert.Equal("192", shapes["norm.weight"]);
        Assert.Equal("1000,192", shapes["head.weight"]);
        Assert.Equal(4 + (12 * 12) + 4, shapes.Count);
        Assert.Empty(tiny.named_buffers());
    }

    [Fact]
    public void EveryTransformerBlockIsPrunable()
    {
        using var model = ModelRegistry.Create("deit_small_patch16_224");
        Assert.Equal(Enumerable.Range(0, 12), model.Blocks.Select(b => b.Index));
        Assert.All(model.Blocks, b => Assert.Equal(0, b.Stage));
        Assert.Equal("blocks.7", model.Blocks[7].Path);
        Assert.IsType<DeiTBlock>(model.Blocks[7].Module);
    }

    [Fact]
    public void SmallInputSettingIsPatch4With64TokensAt32()
    {
        var config = ModelConfig.SmallInput("deit_tiny_patch16_224");
        Assert.Equal(new ModelConfig { Name = "deit_tiny_patch16_224", InChans = 1, NumClasses = 10, StemStride = 4, ImgSize = 32 }, config);
        Assert.Equal(config, ModelConfig.ForInput("deit_tiny_patch16_224", 32, 1, 10));
        using var model = (DeiT)ModelRegistry.Create(config);
        var shapes = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        Assert.Equal([1L, 65, 192], shapes["pos_embed"]);
        Assert.Equal([192L, 1, 4, 4], shapes["patch_embed.proj.weight"]);
        using var logits = model.call(randn(2, 1, 32, 32));
        Assert.Equal([2L, 10], logits.shape);
        // ConvNeXt takes any input size, so its configuration records none.
        Assert.Null(ModelConfig.SmallInput("convnext_atto").ImgSize);
        // At 224 the family defaults: patch 16, pos_embed for 14×14 patches.
        Assert.Equal(new ModelConfig { Name = "deit_small_patch16_224", InChans = 3, NumClasses = 1000, ImgSize = 224 },
            ModelConfig.ForInput("deit_small_patch16_224", 224, 3, 1000));
    }

    [Fact]
    public void AnInputOfTheWrongSizeIsAClearError()
    {
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("deit_tiny_patch16_224"));
        var e = Assert.Throws<ArgumentException>(() => model.call(randn(1, 1, 64, 64)));
        Assert.Contains("1×32×32", e.Message);
        Assert.Contains("[1, 1, 64, 64]", e.Message);
        var bad = Assert.Throws<ArgumentException>(() => ModelRegistry.Create(ModelConfig.SmallInput("deit_tiny_patch16_224") with { ImgSize = 30 }));
        Assert.Contains("30", bad.Message);
    }

    [Fact]
    public void ForwardIsTheDefinitionWrittenOut()
    {
        // The whole model by hand with explicit softmax attention (the fused kernel checked against it).
        using var scope = NewDisposeScope();
        using var model = (DeiT)ModelRegistry.Create(ModelConfig.SmallInput("deit_tiny_patch16_224"));
        DeiTTestSupport.Randomize(model, 1);
        model.eval();
        var p = model.named_parameters().ToDictionary(n => n.name, n => (Tensor)n.parameter);
        var x = randn(3, 1, 32, 32, generator: new Generator(2));

        const int d = 192, heads = 3;
        var t = nn.functional.conv2d(x, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], strides: [4, 4]).flatten(2).transpose(1, 2);
        t = cat([p["cls_token"].expand(3, -1, -1), t], 1) + p["pos_embed"];
        Tensor Ln(Tensor v, string name) => nn.functional.layer_norm(v, [d], p[name + ".weight"], p[name + ".bias"], 1e-6);
        Tensor Lin(Tensor v, string name) => v.matmul(p[name + ".weight"].t()) + p[name + ".bias"];
        for (var i = 0; i < 12; i++)
        {
            var qkv = Lin(Ln(t, $"blocks.{i}.norm1"), $"blocks.{i}.attn.qkv").reshape(3, 65, 3, heads, d / heads).permute(2, 0, 3, 1, 4);
            var a = (qkv[0].matmul(qkv[1].transpose(-2, -1)) / Math.Sqrt(d / heads)).softmax(-1);
            t = t + Lin(a.matmul(qkv[2]).transpose(1, 2).reshape(3, 65, d), $"blocks.{i}.attn.proj");
            var h = nn.functional.gelu(Lin(Ln(t, $"blocks.{i}.norm2"), $"blocks.{i}.mlp.fc1"));
            t = t + Lin(h, $"blocks.{i}.mlp.fc2");
        }
        var expected = Lin(Ln(t, "norm").select(1, 0), "head");

        var actual = model.call(x);
        Assert.True(PruningTestSupport.MaxAbsDiff(actual, expected) < 1e-4 * Math.Max(1, PruningTestSupport.MaxAbs(expected)),
            $"max diff {PruningTestSupport.MaxAbsDiff(actual, expected)}");
        Assert.True(PruningTestSupport.MaxAbs(expected) > 0.5);
    }

    [Fact]
    public void MacsCountLinearLayersAndAttentionMatmuls()
    {
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("deit_tiny_patch16_224"));
        var profile = ModelProfiler.Profile(model, 32);
        // Per block with N = 65 tokens, D = 192: qkv 3ND², proj ND², QKᵀ and AV N²D each, fc1 and fc2 4ND² each.
        const long n = 65, d = 192;
        var block = (12 * n * d * d) + (2 * n * n * d);
        Assert.All(profile.Blocks, b => Assert.Equal(block, b.Macs));
        Assert.All(profile.Blocks, b => Assert.Equal((12 * d * d) + (13 * d), b.Params));
        // patch_embed: 64 patches × D × 16; head: D × 10.
        Assert.Equal((12 * block) + (64 * d * 16) + (d * 10), profile.Macs);

        using var imagenet = ModelRegistry.Create("deit_tiny_patch16_224");
        // ~1.26 G MACs at 224² (fvcore, which counts the attention matmuls too, reports 1.3 G for DeiT-Ti).
        var macs = ModelProfiler.Profile(imagenet, 224).Macs;
        Assert.InRange(macs, 1.2e9, 1.3e9);
    }

    [Fact]
    public void InitialisedWeightsFollowTimm()
    {
        using var model = ModelRegistry.Create("deit_tiny_patch16_224");
        var p = model.named_parameters().ToDictionary(n => n.name, n => n.parameter);
        Assert.InRange(p["blocks.3.mlp.fc1.weight"].std().item<float>(), 0.019, 0.021);
        Assert.InRange(p["pos_embed"].std().item<float>(), 0.019, 0.021);
        Assert.InRange(p["cls_token"].abs().max().item<float>(), 0, 1e-5);
        Assert.Equal(0, p["blocks.3.attn.qkv.bias"].abs().max().item<float>());
        Assert.Equal(1, p["blocks.3.norm1.weight"].min().item<float>());
    }
}
