using TorchSharp;
using Updp.Models;
using Updp.Models.MobileNetV2;
using static TorchSharp.torch;

namespace Updp.Tests.Models;

public class MobileNetV2Tests
{
    // torchvision.models.mobilenet_v2(width_mult=w).parameters(), counted with torchvision 0.14.
    [Theory]
    [InlineData("mobilenetv2_050", 1_968_680)]
    [InlineData("mobilenetv2_100", 3_504_872)]
    [InlineData("mobilenetv2_140", 6_108_776)]
    public void ParameterCountsAt1000ClassesAreTorchvisions(string name, long expected)
    {
        using var model = ModelRegistry.Create(name);
        Assert.Equal(expected, ModelProfiler.CountParameters(model));
        Assert.Equal("mobilenetv2", ModelRegistry.Get(name).Family);
    }

    [Fact]
    public void ParameterNamesAreTorchvisions()
    {
        using var model = ModelRegistry.Create("mobilenetv2_100");
        var names = model.state_dict().Keys.ToList();
        // torchvision's mobilenet_v2().state_dict(): 314 entries (TorchSharp lists parameters before buffers).
        Assert.Equal(314, names.Count);
        Assert.Equal(names.Count, names.Distinct().Count());
        Assert.Equal(["features.0.0.weight", "features.0.1.weight", "features.0.1.bias", "features.1.conv.0.0.weight"], names.Take(4));
        Assert.Contains("features.0.1.num_batches_tracked", names);
        Assert.Contains("features.17.conv.3.running_var", names);
        Assert.Contains("features.18.1.running_mean", names);
        Assert.Equal(["classifier.1.weight", "classifier.1.bias"], names.Where(n => n.StartsWith("classifier", StringComparison.Ordinal)));
        var shapes = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        Assert.Equal([16, 32, 1, 1], shapes["features.1.conv.1.weight"]);
        Assert.Equal([16], shapes["features.1.conv.2.weight"]);
        Assert.Equal([96, 16, 1, 1], shapes["features.2.conv.0.0.weight"]);
        Assert.Equal([96, 1, 3, 3], shapes["features.2.conv.1.0.weight"]);
        Assert.Equal([24, 96, 1, 1], shapes["features.2.conv.2.weight"]);
        Assert.Equal([24], shapes["features.2.conv.3.running_mean"]);
        Assert.Equal([1280, 320, 1, 1], shapes["features.18.0.weight"]);
        Assert.Equal([1000, 1280], shapes["classifier.1.weight"]);
        Assert.DoesNotContain(names, n => n.Contains('<') || n.Contains("drop_path", StringComparison.Ordinal));
    }

    [Fact]
    public void SeventeenBlocksWithTorchvisionPathsTimmStagesAndShapes()
    {
        using var model = ModelRegistry.Create("mobilenetv2_140");
        Assert.Equal(17, model.Blocks.Count);
        Assert.Equal(Enumerable.Range(1, 17).Select(k => $"features.{k}"), model.Blocks.Select(b => b.Path));
        Assert.Equal([0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6], model.Blocks.Select(b => b.Stage));
        var blocks = model.Blocks.Select(b => (InvertedResidual)b.Module).ToList();
        // The blocks that add their input: stride 1 and as many channels out as in.
        Assert.Equal([2, 4, 5, 7, 8, 9, 11, 12, 14, 15], blocks.Select((b, i) => (b, i)).Where(p => p.b.UseResidual).Select(p => p.i));
        Assert.Equal([1, 3, 6, 13], blocks.Select((b, i) => (b, i)).Where(p => p.b.Stride == 2).Select(p => p.i));
        // Width 1.4: 48-channel stem, 24·1.4 → 32 (rounded to 8), 1792-channel head.
        Assert.Equal(48, blocks[0].InChannels);
        Assert.Null(blocks[0].Expand);
        Assert.Equal(32, blocks[1].OutChannels);
        Assert.Equal(6 * 32, blocks[3].Hidden);
        Assert.Equal([1000, 1792], model.state_dict()["classifier.1.weight"].shape);
    }

    [Theory]
    [InlineData(32 * 1.4, 48)]
    [InlineData(16 * 0.5, 8)]
    [InlineData(24 * 1.4, 32)]
    [InlineData(160 * 0.35, 56)]
    [InlineData(32 * 0.35, 16)] // 8 would be more than 10% below 11.2
    [InlineData(1280 * 1.4, 1792)]
    public void ChannelsRoundToMultiplesOf8NeverMoreThan10PercentDown(double value, long expected) =>
        Assert.Equal(expected, MobileNetV2.MakeDivisible(value));

    [Fact]
    public void SmallInputSettingIsStemStride1WithTheBlockStridesKept()
    {
        var config = ModelConfig.SmallInput("mobilenetv2_100");
        Assert.Equal(1, config.StemStride);
        Assert.Equal(config, ModelConfig.ForInput("mobilenetv2_100", 32, 1, 10));
        Assert.Null(ModelConfig.ForInput("mobilenetv2_100", 224, 3, 1000).StemStride);
        using var model = ModelRegistry.Create(config);
        var sizes = new List<long>();
        var hooks = model.Blocks.Select(b => ((nn.Module<Tensor, Tensor>)b.Module).register_forward_hook((_, _, y) =>
        {
            sizes.Add(y.shape[2]);
            return y;
        })).ToList();
        using var _ = no_grad();
        model.eval();
        using var logits = model.call(randn(2, 1, 32, 32));
        hooks.ForEach(h => h.remove());
        Assert.Equal([2, 10], logits.shape);
        Assert.Equal([32, 16, 16, 8, 8, 8, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2], sizes);
        // The same MACs as the ImageNet model at 64²: only the stem differs, and it has 1 input channel.
        var small = ModelProfiler.Profile(model, 32);
        using var reference = ModelRegistry.Create(new ModelConfig { Name = "mobilenetv2_100", InChans = 1, NumClasses = 10 });
        Assert.Equal(ModelProfiler.Profile(reference, 64).Macs, small.Macs);
    }

    [Fact]
    public void StemStrideBelowOneAndLayerScaleAreRejected()
    {
        var e = Assert.Throws<ArgumentException>(() => ModelRegistry.Create(new ModelConfig { Name = "mobilenetv2_050", StemStride = 0 }));
        Assert.Contains("stem_stride", e.Message);
        e = Assert.Throws<ArgumentException>(() => ModelRegistry.Create(new ModelConfig { Name = "mobilenetv2_050", LayerScaleInit = 0.1 }));
        Assert.Contains("ls_init_value", e.Message);
    }

    [Fact]
    public void MacsAt224AreTheUsual300M()
    {
        using var model = ModelRegistry.Create("mobilenetv2_100");
        var profile = ModelProfiler.Profile(model, 224);
        // torchvision's mobilenet_v2 counted the same way in PyTorch (forward hooks on every Conv2d and
        // Linear, output elements × weight[0].numel()) gives 300,774,272.
        Assert.Equal(300_774_272, profile.Macs);
        // Block 0 at 112²: dw 9·32 + pw 32·16 MACs per position.
        Assert.Equal(112 * 112 * ((9 * 32) + (32 * 16)), profile.Blocks[0].Macs);
    }

    [Theory]
    [InlineData("conv_stem.weight", "features.0.0.weight")]
    [InlineData("bn1.running_var", "features.0.1.running_var")]
    [InlineData("blocks.0.0.conv_dw.weight", "features.1.conv.0.0.weight")]
    [InlineData("blocks.0.0.bn1.bias", "features.1.conv.0.1.bias")]
    [InlineData("blocks.0.0.conv_pw.weight", "features.1.conv.1.weight")]
    [InlineData("blocks.0.0.bn2.num_batches_tracked", "features.1.conv.2.num_batches_tracked")]
    [InlineData("blocks.1.0.conv_pw.weight", "features.2.conv.0.0.weight")]
    [InlineData("blocks.1.1.bn1.weight", "features.3.conv.0.1.weight")]
    [InlineData("blocks.3.2.conv_dw.weight", "features.9.conv.1.0.weight")]
    [InlineData("blocks.4.0.bn2.running_mean", "features.11.conv.1.1.running_mean")]
    [InlineData("blocks.5.2.conv_pwl.weight", "features.16.conv.2.weight")]
    [InlineData("blocks.6.0.bn3.bias", "features.17.conv.3.bias")]
    [InlineData("conv_head.weight", "features.18.0.weight")]
    [InlineData("bn2.weight", "features.18.1.weight")]
    [InlineData("classifier.weight", "classifier.1.weight")]
    [InlineData("classifier.bias", "classifier.1.bias")]
    [InlineData("features.5.conv.0.0.weight", "features.5.conv.0.0.weight")]
    [InlineData("classifier.1.weight", "classifier.1.weight")]
    [InlineData("blocks.7.0.conv_pw.weight", "blocks.7.0.conv_pw.weight")]
    [InlineData("blocks.1.2.conv_pw.weight", "blocks.1.2.conv_pw.weight")]
    public void TimmNamesMapOntoTorchvisions(string timm, string torchvision) =>
        Assert.Equal(torchvision, MobileNetV2.TimmKey(timm));

    [Fact]
    public void EveryTimmNameOfTheModelMapsOntoADistinctTorchvisionName()
    {
        using var model = ModelRegistry.Create("mobilenetv2_100");
        var ours = model.state_dict().Keys.ToHashSet();
        // timm's names, written from its block structure: ds block then inverted residuals per stage.
        var timm = new List<string> { "conv_stem.weight" };
        static IEnumerable<string> Bn(string p) => new[] { "weight", "bias", "running_mean", "running_var", "num_batches_tracked" }.Select(s => $"{p}.{s}");
        timm.AddRange(Bn("bn1"));
        for (var i = 0; i < MobileNetV2.Stages.Count; i++)
        {
            for (var j = 0; j < MobileNetV2.Stages[i].N; j++)
            {
                var p = $"blocks.{i}.{j}";
                timm.AddRange(i == 0
                    ? [$"{p}.conv_dw.weight", .. Bn($"{p}.bn1"), $"{p}.conv_pw.weight", .. Bn($"{p}.bn2")]
                    : [$"{p}.conv_pw.weight", .. Bn($"{p}.bn1"), $"{p}.conv_dw.weight", .. Bn($"{p}.bn2"), $"{p}.conv_pwl.weight", .. Bn($"{p}.bn3")]);
            }
        }
        timm.AddRange(["conv_head.weight", .. Bn("bn2"), "classifier.weight", "classifier.bias"]);
        var mapped = timm.Select(MobileNetV2.TimmKey).ToList();
        Assert.Equal(ours.Count, mapped.Count);
        Assert.Equal(ours.Order(StringComparer.Ordinal), mapped.Order(StringComparer.Ordinal));
    }
}
