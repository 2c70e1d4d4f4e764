using TorchSharp;
using TorchSharp.Modules;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Models.ResNet;
using Updp.Pruning.Blocks;
using Updp.Tests.Pruning;
using static TorchSharp.torch;

namespace Updp.Tests.Models;

/// <summary>ResNet's pruned, merged and dropped forms on random weights and non-trivial BN statistics.</summary>
public class ResNetBlockTests
{
    /// <summary>Block kinds: BasicBlock and Bottleneck with identity and projection shortcuts, stride 1 and 2.</summary>
    public static TheoryData<string, int> Cases => new()
    {
        { "basic-s1-identity", 9 },
        { "basic-s2-projection", 8 },
        { "basic-s2-projection", 9 },
        { "bottleneck-s1-projection", 8 }, // resnet50's layer1.0: first block, widening without a stride
        { "bottleneck-s1-identity", 7 },
        { "bottleneck-s2-projection", 9 },
    };

    private static nn.Module<Tensor, Tensor> Block(string kind) => kind switch
    {
        "basic-s1-identity" => new BasicBlock(8, 8, 1),
        "basic-s2-projection" => new BasicBlock(8, 16, 2),
        "bottleneck-s1-projection" => new Bottleneck(8, 4, 1),
        "bottleneck-s1-identity" => new Bottleneck(16, 4, 1),
        "bottleneck-s2-projection" => new Bottleneck(16, 4, 2),
        _ => throw new ArgumentException(kind),
    };

    private static long InChannels(string kind) => kind.StartsWith("bottleneck-s1-projection", StringComparison.Ordinal) || kind.StartsWith("basic", StringComparison.Ordinal) ? 8 : 16;

    /// <summary>Conv weights with unit gain, BN affines around 1 and 0, running means around 0 and variances in [0.5, 2].</summary>
    internal static void Randomize(nn.Module module, int seed)
    {
        var g = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var m in module.modules())
        {
            switch (m)
            {
                case Conv2d conv:
                    using (var r = randn(conv.weight.shape, generator: g))
                    {
                        conv.weight.copy_(r / Math.Sqrt(conv.weight.numel() / conv.weight.shape[0]));
                    }
                    break;
                case BatchNorm2d bn:
                    using (var r = randn(bn.weight.shape, generator: g))
                    {
                        bn.weight.copy_(1 + (0.2 * r));
                        bn.bias!.copy_(0.1 * r.flip(0));
                    }
                    PruningTestSupport.RandomizeStatistics(bn, g);
                    break;
                case Linear linear:
                    using (var r = randn(linear.weight.shape, generator: g))
                    {
                        linear.weight.copy_(r / Math.Sqrt(linear.weight.shape[1]));
                    }
                    break;
            }
        }
    }

    private static (nn.Module<Tensor, Tensor> Original, IProgressiveBlock Pruned, Tensor X) Setup(string kind, int side, int seed)
    {
        var original = Block(kind);
        Randomize(original, seed);
        var pruned = (IProgressiveBlock)BlockRules.For(original).Prune(original);
        var x = randn([3, InChannels(kind), side, side], generator: new Generator((ulong)seed + 1));
        return (original, pruned, x);
    }

    private static Tensor Eval(IProgressiveBlock block, Tensor x)
    {
        var m = (nn.Module<Tensor, Tensor>)block;
        m.eval();
        using var _ = no_grad();
        return m.call(x);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AtLambdaZeroThePrunedBlockIsTheOriginalBitForBit(string kind, int side)
    {
        using var scope = NewDisposeScope();
        var (original, pruned, x) = Setup(kind, side, 1);
        var prunedModule = (nn.Module<Tensor, Tensor>)pruned;
        Assert.Equal(original.state_dict().Keys, prunedModule.state_dict().Keys);
        Assert.Empty(pruned.BatchNorms);
        foreach (var training in new[] { false, true })
        {
            original.train(training);
            prunedModule.train(training);
            using var _ = no_grad();
            Assert.True(Checkpoints.TestSupport.Identical(original.call(x), prunedModule.call(x)), $"training={training}");
        }
    }

    /// <summary>The linear pruned block computed directly: no inner ReLU, input padded once, no conv padding.</summary>
    private static Tensor LinearReference(nn.Module original, Tensor x)
    {
        static Tensor Bn(Tensor t, BatchNorm2d bn) =>
            nn.functional.batch_norm(t, bn.running_mean!, bn.running_var!, bn.weight, bn.bias!, training: false, eps: bn.eps);
        static Tensor Shortcut(Sequential? d, Tensor x) =>
            d is null ? x : Bn(nn.functional.conv2d(x, ((Conv2d)d[0]).weight, strides: [((Conv2d)d[0]).stride[0], ((Conv2d)d[0]).stride[0]]), (BatchNorm2d)d[1]);
        using var _ = no_grad();
        switch (original)
        {
            case BasicBlock b:
                {
                    var s = b.Stride;
                    var h = Bn(nn.functional.conv2d(nn.functional.pad(x, [1 + s, 1 + s, 1 + s, 1 + s]), b.Conv1.weight, strides: [s, s]), b.Bn1);
                    var y = Bn(nn.functional.conv2d(h, b.Conv2.weight), b.Bn2);
                    return nn.functional.relu(y + Shortcut(b.Downsample, x));
                }
            case Bottleneck b:
                {
                    var s = b.Stride;
                    var h = Bn(nn.functional.conv2d(nn.functional.pad(x, [1, 1, 1, 1]), b.Conv1.weight), b.Bn1);
                    h = Bn(nn.functional.conv2d(h, b.Conv2.weight, strides: [s, s]), b.Bn2);
                    var y = Bn(nn.functional.conv2d(h, b.Conv3.weight), b.Bn3);
                    return nn.functional.relu(y + Shortcut(b.Downsample, x));
                }
            default:
                throw new ArgumentException(original.GetType().Name);
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AtLambdaOneThePrunedBlockIsTheLinearBlock(string kind, int side)
    {
        using var scope = NewDisposeScope();
        var (original, pruned, x) = Setup(kind, side, 2);
        pruned.Lambda = 1;
        var actual = Eval(pruned, x);
        var expected = LinearReference(original, x);
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-5), $"max diff {PruningTestSupport.MaxAbsDiff(actual, expected)}");
        // ... and differs from the original block, or the comparison would prove nothing.
        original.eval();
        using var _ = no_grad();
        Assert.True(PruningTestSupport.MaxAbsDiff(original.call(x), actual) > 1e-2);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MergedBlockComputesThePrunedBlockAtLambdaOne(string kind, int side)
    {
        using var scope = NewDisposeScope();
        var (original, pruned, x) = Setup(kind, side, 3);
        pruned.Lambda = 1;
        var expected = Eval(pruned, x);
        var rule = BlockRules.For(original);
        using var merged = rule.Merge((nn.Module)pruned);
        Assert.Equal(BlockForm.Merged, rule.FormOf(merged));
        merged.eval();
        using var _ = no_grad();
        var actual = merged.call(x);

        var conv = merged.named_parameters().Single(p => p.name == "conv.weight").parameter;
        var stride = original is BasicBlock b ? b.Stride : ((Bottleneck)original).Stride;
        var kernel = original is BasicBlock ? 3 + (2 * stride) : 3;
        Assert.Equal(kernel, conv.shape[2]);
        Assert.Equal(expected.shape, actual.shape);
        var tolerance = 1e-4 * Math.Max(1, PruningTestSupport.MaxAbs(expected));
        Assert.True(PruningTestSupport.MaxAbsDiff(actual, expected) <= tolerance, $"max diff {PruningTestSupport.MaxAbsDiff(actual, expected)} > {tolerance}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void InBetweenTheBlockMovesContinuouslyAndItsBatchNormSeesWhatTheOriginalSees(string kind, int side)
    {
        using var scope = NewDisposeScope();
        var (original, pruned, x) = Setup(kind, side, 4);
        var module = (nn.Module<Tensor, Tensor>)pruned;
        original.eval();
        Tensor atZero;
        using (no_grad())
        {
            atZero = original.call(x);
            pruned.Lambda = 1e-6;
            var near = Eval(pruned, x);
            Assert.True(PruningTestSupport.MaxAbsDiff(near, atZero) < 1e-4, $"λ=1e-6 differs from λ=0 by {PruningTestSupport.MaxAbsDiff(near, atZero)}");
            pruned.Lambda = 0.5;
            Assert.True(PruningTestSupport.MaxAbsDiff(Eval(pruned, x), atZero) > 1e-3);
        }

        // In training mode bn1 normalises with, and records, the statistics of the original conv1 output only.
        var bn1 = original.modules().OfType<BatchNorm2d>().First();
        var before = bn1.running_mean!.clone();
        original.train();
        using (no_grad())
        {
            original.call(x);
        }
        var originalMean = bn1.running_mean!.clone();
        using (no_grad())
        {
            bn1.running_mean!.copy_(before);
        }
        module.train();
        var y = module.call(x);
        Assert.True(bn1.running_mean!.allclose(originalMean, rtol: 1e-5, atol: 1e-6));
        // Gradients reach every parameter through the progressive path.
        y.sum().backward();
        Assert.All(module.named_parameters(), p => Assert.True(p.parameter.grad is not null && p.parameter.grad.abs().sum().item<float>() > 0, p.name));
    }

    [Fact]
    public void DroppingAProjectionBlockKeepsItsShortcut()
    {
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("resnet18"));
        Randomize(model, 5);
        model.eval();
        var downsample = ((BasicBlock)model.Blocks[2].Module).Downsample!;
        var x = randn(2, 64, 8, 8, generator: new Generator(6));

        model.Drop(2); // layer2.0: stride 2, 64 → 128
        model.Drop(3); // layer2.1: identity

        Assert.Equal(BlockForm.Dropped, model.FormOf(2));
        Assert.Equal(BlockForm.Dropped, model.FormOf(3));
        Assert.Equal(["downsample.0.weight", "downsample.1.weight", "downsample.1.bias"], model.Blocks[2].Module.named_parameters().Select(p => p.name));
        Assert.Empty(model.Blocks[3].Module.parameters());
        using (no_grad())
        {
            var expected = nn.functional.relu(downsample.call(x));
            Assert.True(Checkpoints.TestSupport.Identical(expected, ((nn.Module<Tensor, Tensor>)model.Blocks[2].Module).call(x)));
            Assert.Equal([2L, 10], model.call(randn(2, 1, 32, 32)).shape);
        }
        Assert.Equal([2, 3], PruningState.Of(model).Dropped);
    }

    [Fact]
    public void MergedProjectionBlockCannotBeDropped()
    {
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("resnet18"));
        model.Prune(2).Lambda = 1;
        Merger.MergeAll(model, [randn(1, 1, 32, 32)]);
        var e = Assert.Throws<InvalidOperationException>(() => model.Drop(2));
        Assert.Contains("projection", e.Message);
    }

    public static TheoryData<string, int, int[]> Models => new()
    {
        { "resnet18", 1, [0, 1, 2, 3, 4, 5, 7] },      // every BasicBlock but layer4.0 (dropped below), small-input stem
        { "resnet34", 4, [0, 3, 7, 8, 13, 15] },       // first blocks of each layer and others, ImageNet stem at 32²
        { "resnet50", 4, [0, 1, 3, 4, 7, 8] },          // bottlenecks: projection at stride 1 and 2, identity
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void MergedModelIsVerifiedAndSurvivesSaveAndLoad(string name, int stemStride, int[] blocks)
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDir();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput(name) with { StemStride = stemStride });
        Randomize(model, 7);
        foreach (var i in blocks)
        {
            model.Prune(i).Lambda = 1;
        }
        model.eval();
        var x = randn(2, 1, 32, 32, generator: new Generator(8));
        var report = Merger.MergeAll(model, [x], randomBatches: 1);

        Assert.Equal(blocks, report.MergedBlocks);
        Assert.True(report.MaxAbsDiff < 1e-5 * Math.Max(1, report.MaxAbsOutput), $"merge error {report.MaxAbsDiff}");
        Assert.True(report.MaxAbsOutput > 0.1);
        var drop = model.Blocks.Select(b => b.Index).First(i => !blocks.Contains(i));
        model.Drop(drop);

        var path = dir.File("merged.safetensors");
        Checkpoint.Save(model, path, PrunedModels.Describe(model));
        using var loaded = Checkpoint.Load(path, options: PrunedModels.LoadOptions).Model;
        Assert.Equal(blocks, PruningState.Of(loaded).Merged);
        Assert.Equal([drop], PruningState.Of(loaded).Dropped);
        using var _ = no_grad();
        Assert.True(Checkpoints.TestSupport.Identical(model.call(x), loaded.call(x)));
    }
}
