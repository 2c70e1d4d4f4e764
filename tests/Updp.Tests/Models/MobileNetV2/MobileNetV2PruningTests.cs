using TorchSharp;
using TorchSharp.Modules;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Models.MobileNetV2;
using Updp.Pruning;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Models;

/// <summary>The inverted residual's progressive and merged forms (docs/METHOD.md#mobilenetv2), for every kind of block.</summary>
public class MobileNetV2PruningTests
{
    /// <summary>The kinds of block MobileNetV2 has, plus a residual t=1 block (C, C', stride, t).</summary>
    public static TheoryData<string> Kinds => ["t1", "t1-residual", "strided", "wider", "residual"];

    private static InvertedResidual Block(string kind, int seed)
    {
        var block = kind switch
        {
            "t1" => new InvertedResidual(8, 6, 1, 1, 0),           // the first block: t=1, C≠C'
            "t1-residual" => new InvertedResidual(6, 6, 1, 1, 0),
            "strided" => new InvertedResidual(6, 10, 2, 6, 0),      // stride 2, C≠C'
            "wider" => new InvertedResidual(6, 10, 1, 6, 0),        // stride 1, C≠C': no residual
            "residual" => new InvertedResidual(6, 6, 1, 6, 0),
            _ => throw new ArgumentException(kind),
        };
        RandomizeMobileNet(block, seed);
        return block;
    }

    /// <summary>
    /// Unit-gain conv weights, BN affines around 1 and ±0.3 (so that BN₁(0), the moved padding, is far
    /// from 0), running means around 0 and variances in [0.5, 2].
    /// </summary>
    internal static void RandomizeMobileNet(nn.Module model, int seed)
    {
        var g = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var m in model.modules())
        {
            switch (m)
            {
                case BatchNorm2d bn:
                    bn.weight.copy_(1 + (0.2 * randn(bn.weight.shape, generator: g)));
                    bn.bias!.copy_(0.3 * randn(bn.bias.shape, generator: g));
                    RandomizeStatistics(bn, g);
                    break;
                case Conv2d conv:
                    conv.weight.copy_(randn(conv.weight.shape, generator: g) * Math.Sqrt(2.0 / (conv.weight.numel() / conv.weight.shape[0])));
                    conv.bias?.copy_(0.1 * randn(conv.bias.shape, generator: g));
                    break;
                case Linear linear:
                    linear.weight.copy_(randn(linear.weight.shape, generator: g) / Math.Sqrt(linear.weight.shape[1]));
                    linear.bias!.copy_(0.1 * randn(linear.bias.shape, generator: g));
                    break;
            }
        }
    }

    /// <summary>
    /// The progressive block written out from its definition, with the padding as a mask: pad x by
    /// one zero pixel, pw 1×1, BN₁ (batch statistics of the unpadded map when training), act_λ inside,
    /// λ·BN₁(pw(0)) on the border; dw 3×3 without padding; BN₂; act_λ; pwl; BN₃; +x.
    /// </summary>
    private static Tensor ByHand(InvertedResidual o, Tensor x, double lambda, bool training)
    {
        Tensor Bn(BatchNorm2d bn, Tensor z, Tensor statsOf)
        {
            var mean = training ? statsOf.mean([0, 2, 3]) : bn.running_mean!;
            var variance = training ? statsOf.var([0L, 2, 3], unbiased: false) : bn.running_var!;
            static Tensor C(Tensor t) => t.view(1, -1, 1, 1);
            return ((z - C(mean)) / C((variance + bn.eps).sqrt()) * C(bn.weight)) + C(bn.bias!);
        }
        Tensor Act(Tensor t) => ((1 - lambda) * t.clamp(0, 6)) + (lambda * t);

        var dw = o.Depthwise.Conv;
        Tensor h;
        if (o.Expand is { } e)
        {
            var z = nn.functional.conv2d(nn.functional.pad(x, [1, 1, 1, 1]), e.Conv.weight);
            var interior = nn.functional.conv2d(x, e.Conv.weight);
            var y = Bn(e.Bn, z, interior);
            var mask = nn.functional.pad(ones_like(interior), [1, 1, 1, 1]);
            var padded = (mask * Act(y)) + ((1 - mask) * lambda * y);
            h = nn.functional.conv2d(padded, dw.weight, strides: [o.Stride, o.Stride], groups: o.Hidden);
        }
        else
        {
            h = nn.functional.conv2d(x, dw.weight, strides: [o.Stride, o.Stride], padding: [1, 1], groups: o.Hidden);
        }
        var g = Act(Bn(o.Depthwise.Bn, h, h));
        var p = nn.functional.conv2d(g, o.Project.weight);
        var result = Bn(o.ProjectBn, p, p);
        return o.UseResidual ? result + x : result;
    }

    private static Tensor Input(InvertedResidual b, int size, int seed, int batch = 3) =>
        randn([batch, b.InChannels, size, size], generator: new Generator((ulong)seed));

    private static ProgressiveInvertedResidual Pruned(InvertedResidual o) => (ProgressiveInvertedResidual)BlockRules.For(o).Prune(o);

    [Theory]
    [MemberData(nameof(Kinds))]
    public void AtLambdaZeroTheBlockIsTheOriginalBitForBit(string kind)
    {
        using var scope = NewDisposeScope();
        var original = Block(kind, 1);
        var pruned = Pruned(original);
        Assert.Equal(0, pruned.Lambda);
        foreach (var training in new[] { false, true })
        {
            original.train(training);
            pruned.train(training);
            foreach (var size in new[] { 6, 7 })
            {
                var x = Input(original, size, size);
                Assert.True(Checkpoints.TestSupport.Identical(original.call(x), pruned.call(x)), $"{kind}, training {training}, {size}×{size}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void AtLambdaOneTheBlockIsTheLinearPrunedBlock(string kind)
    {
        using var scope = NewDisposeScope();
        var original = Block(kind, 2);
        var pruned = Pruned(original);
        pruned.Lambda = 1;
        foreach (var training in new[] { false, true })
        {
            pruned.train(training);
            foreach (var size in new[] { 6, 7 })
            {
                using var _ = no_grad();
                var x = Input(original, size, 10 + size);
                var expected = ByHand(original, x, 1, training);
                var actual = pruned.call(x);
                Assert.True(MaxAbsDiff(actual, expected) <= 1e-5 * Math.Max(1, MaxAbs(expected)), $"{kind}, training {training}: {MaxAbsDiff(actual, expected)}");
                // The ReLU6s really are gone.
                original.train(training);
                Assert.True(MaxAbsDiff(actual, original.call(x)) > 1e-2, kind);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void BetweenTheEndpointsActivationsAndPaddingMixLinearly(string kind)
    {
        using var scope = NewDisposeScope();
        var original = Block(kind, 3);
        var pruned = Pruned(original);
        pruned.Lambda = 0.3;
        foreach (var training in new[] { false, true })
        {
            pruned.train(training);
            using var _ = no_grad();
            var x = Input(original, 7, 5);
            var expected = ByHand(original, x, 0.3, training);
            Assert.True(MaxAbsDiff(pruned.call(x), expected) <= 1e-5 * Math.Max(1, MaxAbs(expected)), $"{kind}, training {training}");
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void TheMergedBlockComputesThePrunedBlockAtLambdaOne(string kind)
    {
        using var scope = NewDisposeScope();
        var original = Block(kind, 4);
        var pruned = Pruned(original);
        pruned.Lambda = 1;
        pruned.eval();
        using var merged = (MergedInvertedResidual)BlockRules.For(pruned).Merge(pruned);
        merged.eval();
        Assert.Equal(BlockForm.Merged, BlockRules.For(merged).FormOf(merged));
        // One dense 3×3 conv C→C' with bias, stride s.
        Assert.Equal(["conv.weight", "conv.bias"], merged.named_parameters().Select(p => p.name));
        Assert.Equal([original.OutChannels, original.InChannels, 3, 3], merged.Conv.weight.shape);
        using var _ = no_grad();
        foreach (var size in new[] { 1, 2, 5, 6, 7 })
        {
            var x = Input(original, size, 20 + size);
            var expected = pruned.call(x);
            var actual = merged.call(x);
            Assert.Equal(expected.shape, actual.shape);
            var bound = Merger.RelativeTolerance * Math.Max(1, MaxAbs(expected));
            Assert.True(MaxAbsDiff(actual, expected) <= bound, $"{kind} at {size}×{size}: {MaxAbsDiff(actual, expected)} > {bound}");
        }
    }

    [Fact]
    public void AMergeThatIgnoredTheMovedPaddingWouldFailTheCheck()
    {
        // Guards the merge test above: with the pruned block's border set to the original's zero
        // padding (λ=1 inside, 0 on the border), the merged conv is off at the border.
        using var scope = NewDisposeScope();
        var original = Block("residual", 5);
        var pruned = Pruned(original);
        pruned.Lambda = 1;
        pruned.eval();
        original.eval();
        using var merged = BlockRules.For(pruned).Merge(pruned);
        merged.eval();
        using var _ = no_grad();
        var x = Input(original, 6, 6);
        var e = original.Expand!;
        var dw = original.Depthwise;
        var h = nn.functional.conv2d(e.Bn.call(e.Conv.call(x)), dw.Conv.weight, padding: [1, 1], groups: original.Hidden);
        var zeroPadded = original.ProjectBn.call(original.Project.call(dw.Bn.call(h))) + x;
        Assert.True(MaxAbsDiff(merged.call(x), zeroPadded) > 1e-2);
    }

    [Fact]
    public void AtAPartialLambdaGradientsReachEveryParameterIncludingThroughTheBorder()
    {
        using var scope = NewDisposeScope();
        var original = Block("strided", 6);
        var pruned = Pruned(original);
        pruned.Lambda = 0.4;
        pruned.train();
        var x = Input(original, 6, 7, batch: 4);
        (pruned.call(x) * randn(4, 10, 3, 3)).sum().backward();
        Assert.All(pruned.named_parameters(), p => Assert.True(p.parameter.grad is { } g && g.abs().sum().item<float>() > 0, p.name));
    }

    [Fact]
    public void PruningKeepsTheNamesAndAddsNoBatchNorm()
    {
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("mobilenetv2_050"));
        var names = model.state_dict().Keys.ToList();
        var progressive = Enumerable.Range(0, 17).Select(model.Prune).ToList();
        Assert.Equal(names, model.state_dict().Keys.ToList());
        Assert.All(progressive, p => Assert.Empty(p.BatchNorms));
        Assert.All(model.Blocks, b => Assert.Equal(BlockForm.Pruned, model.FormOf(b.Index)));

        var original = model.Unprune(3);
        Assert.IsType<InvertedResidual>(original);
        Assert.Same(((ProgressiveInvertedResidual)progressive[3]).Original, original);
        Assert.Equal(names, model.state_dict().Keys.ToList());
    }

    [Fact]
    public void OnlyBlocksThatKeepTheirShapeCanBeDropped()
    {
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("mobilenetv2_050"));
        var droppable = model.Blocks.Where(b => model.CannotDrop(b.Index) is null).Select(b => b.Index);
        Assert.Equal([2, 4, 5, 7, 8, 9, 11, 12, 14, 15], droppable);
        var e = Assert.Throws<ArgumentException>(() => model.Drop(3));
        Assert.Contains("block 3 (features.4) cannot be dropped", e.Message);
        Assert.Contains("stride 2", e.Message);
        Assert.Equal(BlockForm.Original, model.FormOf(3));
        model.Drop(4);
        model.eval();
        using var _ = no_grad();
        Assert.Equal([2, 10], model.call(randn(2, 1, 32, 32)).shape);
    }

    [Fact]
    public void PrunedFormsCountTheMacsOfTheOriginal()
    {
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("mobilenetv2_050"));
        var before = ModelProfiler.Profile(model, 32);
        foreach (var i in new[] { 0, 1, 2, 16 })
        {
            model.Prune(i).Lambda = 0.5;
        }
        var after = ModelProfiler.Profile(model, 32);
        Assert.Equal(before.Macs, after.Macs);
        Assert.Equal(before.Blocks.Select(b => b.Macs), after.Blocks.Select(b => b.Macs));
    }

    [Theory]
    [InlineData(32, 1, true)]   // small-input setting: maps 32 … 2
    [InlineData(40, 3, false)]  // ImageNet stem (stride 2) on 40²: odd maps (5, 3) after the strides
    public void MergingEveryBlockOfAWholeModelPassesTheCheck(int size, int inChans, bool smallInput)
    {
        using var scope = NewDisposeScope();
        var config = smallInput
            ? ModelConfig.SmallInput("mobilenetv2_050")
            : new ModelConfig { Name = "mobilenetv2_050", InChans = inChans, NumClasses = 10 };
        using var model = ModelRegistry.Create(config);
        RandomizeMobileNet(model, 7);
        // Without any activation, 17 random blocks of gain > 1 compound to features of 1e6 that
        // float32 cannot carry to 1e-4 (and that saturate the head's ReLU6, which would make the
        // check vacuous); smaller projection BN scales, as trained networks have, keep them moderate.
        var largest = 0f;
        using (no_grad())
        {
            foreach (var b in model.Blocks)
            {
                ((InvertedResidual)b.Module).ProjectBn.weight.mul_(0.3);
                model.Prune(b.Index).Lambda = 1;
                ((nn.Module<Tensor, Tensor>)model.Blocks[b.Index].Module).register_forward_hook((_, _, y) =>
                {
                    largest = Math.Max(largest, MaxAbs(y));
                    return y;
                });
            }
        }
        model.eval();
        var x = randn([4, inChans, size, size], generator: new Generator(8));
        Tensor expected;
        using (no_grad())
        {
            expected = model.call(x);
        }
        Assert.InRange(largest, 1, 1000);
        Assert.True(expected.std().item<float>() > 0.1, "the logits do not depend on the input");

        var report = Merger.MergeAll(model, [x], randomBatches: 2);

        Assert.Equal(Enumerable.Range(0, 17), report.MergedBlocks);
        Assert.All(model.Blocks, b => Assert.Equal(BlockForm.Merged, model.FormOf(b.Index)));
        Assert.InRange(report.MaxAbsDiff, 0, report.Tolerance);
        using var _ = no_grad();
        Assert.True(MaxAbsDiff(model.call(x), expected) <= Merger.RelativeTolerance * Math.Max(1, MaxAbs(expected)));
    }

    [Fact]
    public void AMergedModelSavesAndLoadsWithItsStructure()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDir();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("mobilenetv2_050"));
        RandomizeMobileNet(model, 9);
        foreach (var i in new[] { 1, 5, 6 })
        {
            model.Prune(i).Lambda = 1;
        }
        model.Drop(12);
        var x = randn([2, 1, 32, 32], generator: new Generator(10));
        Merger.MergeAll(model, [x]);
        model.Prune(8).Lambda = 0.25;
        var path = dir.File("merged.safetensors");
        Checkpoint.Save(model, path, PrunedModels.Describe(model));

        using var loaded = Checkpoint.Load(path, options: PrunedModels.LoadOptions).Model;
        var state = PruningState.Of(loaded);
        Assert.Equal([1, 5, 6], state.Merged);
        Assert.Equal([12], state.Dropped);
        Assert.Equal(0.25, state.Pruned[8]);
        Assert.Equal(model.state_dict().Keys, loaded.state_dict().Keys);
        Assert.Contains("features.2.conv.weight", loaded.state_dict().Keys);
        model.eval();
        using var _ = no_grad();
        Assert.True(Checkpoints.TestSupport.Identical(model.call(x), loaded.call(x)));
    }

    [Fact]
    public void SupernetPreparationCalibratesNothingAndKeepsTheBaseline()
    {
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("mobilenetv2_050"));
        RandomizeMobileNet(model, 11);
        model.eval();
        var x = randn([4, 1, 32, 32], generator: new Generator(12));
        Tensor before;
        using (no_grad())
        {
            before = model.call(x);
        }
        var calibrated = SupernetTraining.Prepare(model, [0, 2, 3, 16], [randn([8, 1, 32, 32], generator: new Generator(13))]);
        Assert.Equal(0, calibrated);
        Assert.Equal(4, model.PrunedBlocks().Count());
        using var _ = no_grad();
        // Every candidate is back at λ=0 with the baseline's statistics: the same outputs, bit for bit.
        Assert.True(Checkpoints.TestSupport.Identical(before, model.call(x)));
    }

    [Fact]
    public void WithoutExpansionTheDepthwiseBecomesADiagonalDenseKernel()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        var d = randn([3, 1, 3, 3], float64, generator: g);
        var db = randn([3], float64, generator: g);
        var p = randn([2, 3, 1, 1], float64, generator: g);
        var pb = randn([2], float64, generator: g);
        var x = randn([2, 3, 6, 6], float64, generator: g);

        var (w, b) = InvertedResidualRule.MergeInvertedResidual(null, (d, db), (p, pb), residual: false);

        var expected = nn.functional.conv2d(nn.functional.conv2d(x, d, db, padding: [1, 1], groups: 3), p, pb);
        Assert.True(nn.functional.conv2d(x, w, b, padding: [1, 1]).allclose(expected, rtol: 1e-10, atol: 1e-10));
    }
}
