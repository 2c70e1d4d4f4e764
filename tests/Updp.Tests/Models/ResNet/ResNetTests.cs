using System.Text.Json;
using TorchSharp;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Models.ResNet;
using static TorchSharp.torch;
using static Updp.Tests.Checkpoints.TestSupport;

namespace Updp.Tests.Models;

public class ResNetTests
{
    private const string BasicFixture = "resnet_basic_w16.pt";
    private const string BottleneckFixture = "resnet_bottleneck_w8.pt";
    private const string IoFixture = "resnet_io.safetensors";
    private const string NamesFixture = "resnet_torchvision_names.json";

    [Theory]
    [InlineData("resnet18", 11_689_512)]
    [InlineData("resnet34", 21_797_672)]
    [InlineData("resnet50", 25_557_032)]
    public void ParameterCountsEqualTorchvisions(string name, long expected)
    {
        using var model = ModelRegistry.Create(name);
        Assert.Equal(expected, ModelProfiler.CountParameters(model));
        // The same number as torchvision counted when it wrote the names fixture.
        using var names = JsonDocument.Parse(File.ReadAllText(Fixture(NamesFixture)));
        Assert.Equal(expected, names.RootElement.GetProperty("params").GetProperty(name).GetInt64());
    }

    [Theory]
    [InlineData("resnet18")]
    [InlineData("resnet34")]
    [InlineData("resnet50")]
    public void StateDictNamesAndShapesEqualTorchvisions(string name)
    {
        using var model = ModelRegistry.Create(name);
        using var names = JsonDocument.Parse(File.ReadAllText(Fixture(NamesFixture)));
        var expected = names.RootElement.GetProperty(name).EnumerateObject()
            .ToDictionary(p => p.Name, p => string.Join(",", p.Value.EnumerateArray().Select(d => d.GetInt64())));
        var actual = model.state_dict().ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value.shape));
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        Assert.All(expected, kv => Assert.Equal(kv.Value, actual[kv.Key]));
    }

    [Fact]
    public void EveryResidualBlockIsPrunableAndIndexedGlobally()
    {
        using var r18 = ModelRegistry.Create("resnet18");
        Assert.Equal(["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1"], r18.Blocks.Select(b => b.Path));
        Assert.Equal([0, 0, 1, 1, 2, 2, 3, 3], r18.Blocks.Select(b => b.Stage));
        Assert.All(r18.Blocks, b => Assert.IsType<BasicBlock>(b.Module));

        using var r50 = ModelRegistry.Create("resnet50");
        Assert.Equal(16, r50.Blocks.Count);
        Assert.Equal(Enumerable.Range(0, 16), r50.Blocks.Select(b => b.Index));
        Assert.Equal("layer3.5", r50.Blocks[12].Path);
        Assert.All(r50.Blocks, b => Assert.IsType<Bottleneck>(b.Module));
        // resnet50's layer1.0 widens 64 → 256 at stride 1: a projection without a stride.
        Assert.NotNull(((Bottleneck)r50.Blocks[0].Module).Downsample);
        Assert.Null(((Bottleneck)r50.Blocks[1].Module).Downsample);
    }

    [Fact]
    public void SmallInputStemIsA3x3Stride1ConvWithoutMaxPool()
    {
        using var scope = NewDisposeScope();
        Assert.Equal(1, ModelRegistry.Get("resnet18").SmallInputStemStride);
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("resnet18"));
        Assert.Equal([64L, 1, 3, 3], model.state_dict()["conv1.weight"].shape);
        // 32×32 in layer1, 4×4 in layer4: resnet18's convs at those sizes, fc on top.
        static long Conv(long side, long outC, long inC, long k) => side * side * outC * inC * k * k;
        var expected = Conv(32, 64, 1, 3) + (4 * Conv(32, 64, 64, 3))
            + Conv(16, 128, 64, 3) + (3 * Conv(16, 128, 128, 3)) + Conv(16, 128, 64, 1)
            + Conv(8, 256, 128, 3) + (3 * Conv(8, 256, 256, 3)) + Conv(8, 256, 128, 1)
            + Conv(4, 512, 256, 3) + (3 * Conv(4, 512, 512, 3)) + Conv(4, 512, 256, 1)
            + (512 * 10);
        var profile = ModelProfiler.Profile(model, 32);
        Assert.Equal(expected, profile.Macs);
        Assert.Equal(32L * 32 * 64 * 64 * 9 * 2, profile.Blocks[0].Macs);

        using var stride2 = ModelRegistry.Create(ModelConfig.SmallInput("resnet18") with { StemStride = 2 });
        Assert.Equal([2L, 10], stride2.call(randn(2, 1, 32, 32)).shape);
        Assert.Equal(profile.Blocks[0].Macs / 4, ModelProfiler.Profile(stride2, 32).Blocks[0].Macs);

        var e = Assert.Throws<ArgumentException>(() => ModelRegistry.Create(ModelConfig.SmallInput("resnet18") with { StemStride = 3 }));
        Assert.Contains("got 3", e.Message);
        e = Assert.Throws<ArgumentException>(() => ModelRegistry.Create(ModelConfig.SmallInput("resnet18") with { DropPathRate = 0.1 }));
        Assert.Contains("drop_path_rate 0.1", e.Message);
    }

    [Fact]
    public void ImageNetStemAndForwardShapes()
    {
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create("resnet18", numClasses: 7);
        Assert.Equal([64L, 3, 7, 7], model.state_dict()["conv1.weight"].shape);
        model.eval();
        using var _ = no_grad();
        Assert.Equal([1L, 7], model.call(randn(1, 3, 64, 64)).shape);
        Assert.Equal([1L, 512], model.ForwardFeatures(randn(1, 3, 64, 64)).shape);
    }

    [Fact]
    public void SmallInputForwardAndBackwardReachEveryParameter()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(0);
        using var model = new ResNet(ModelConfig.SmallInput("resnet50"), new ResNet.Architecture(true, [1, 1, 1, 1], 8));
        var logits = model.call(randn(4, 1, 32, 32));
        nn.functional.cross_entropy(logits, tensor(new long[] { 0, 1, 2, 3 })).backward();
        foreach (var (name, p) in model.named_parameters())
        {
            Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"no gradient reached {name}");
        }
    }

    /// <summary>The fixtures' reduced-width models are not registered: build them from the inferred configuration.</summary>
    private static CheckpointLoadOptions Reduced(bool bottleneck, int width) =>
        new() { CreateModel = (config, _) => new ResNet(config, new ResNet.Architecture(bottleneck, [1, 1, 1, 1], width)) };

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
    public void TorchvisionBasicBlockStateDictGivesPyTorchsLogits()
    {
        var loaded = Checkpoint.Load(Fixture(BasicFixture), "resnet18", Reduced(false, 16));
        using var model = loaded.Model;
        Assert.Null(loaded.Meta);
        Assert.Equal(new ModelConfig { Name = "resnet18", InChans = 1, NumClasses = 10, StemStride = 1 }, model.Config);
        Assert.False(model.training);
        // The running statistics came from the file (the fixture's are random, not 0 and 1).
        Assert.NotEqual(0f, model.state_dict()["layer3.0.downsample.1.running_mean"].abs().sum().item<float>());
        Assert.InRange(LogitError(model, "logits_basic"), 0f, 1e-4f);
    }

    [Fact]
    public void NestedTorchvisionBottleneckStateDictGivesPyTorchsLogits()
    {
        var loaded = Checkpoint.Load(Fixture(BottleneckFixture), "resnet50", Reduced(true, 8));
        using var model = loaded.Model;
        Assert.Equal(new ModelConfig { Name = "resnet50", InChans = 1, NumClasses = 10, StemStride = 4 }, model.Config);
        Assert.InRange(LogitError(model, "logits_bottleneck"), 0f, 1e-4f);
    }

    [Fact]
    public void ImageNetShapedStateDictLoadsAsTheRegisteredModel()
    {
        using var dir = new TempDir();
        var path = dir.File("resnet18.safetensors");
        using var source = ModelRegistry.Create("resnet18");
        Pruning.PruningTestSupport.Randomize(source, 3);
        StateDict.WriteSafetensors(path, source.state_dict());

        using var model = Checkpoint.Load(path, "resnet18").Model;
        Assert.Equal(new ModelConfig { Name = "resnet18", InChans = 3, NumClasses = 1000, StemStride = 4 }, model.Config);
        Assert.Equal(Bytes(source.state_dict()["layer4.1.conv2.weight"]), Bytes(model.state_dict()["layer4.1.conv2.weight"]));
    }

    [Fact]
    public void StateDictOfTheWrongKindNamesTheMismatch()
    {
        // A BasicBlock state dict given as resnet50: the loader names what does not fit.
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(Fixture(BasicFixture), "resnet50"));
        Assert.Contains(BasicFixture, e.Message);
    }
}
