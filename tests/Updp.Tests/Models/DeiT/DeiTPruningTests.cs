using TorchSharp;
using TorchSharp.Modules;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Models.DeiT;
using Updp.Pruning;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Models;

/// <summary>DeiT's pruned and merged forms (docs/METHOD.md#deit) through the block rules.</summary>
public class DeiTPruningTests
{
    private const int Dim = 24;
    private const int Heads = 3;
    private const int Tokens = 7;

    /// <summary>An original block with random weights and its progressive form (sharing them), with random BN statistics.</summary>
    private static (DeiTBlock Original, ProgressiveDeiTBlock Pruned) Pair(int seed, double dropPath = 0)
    {
        var original = new DeiTBlock(Dim, Heads, 4, dropPath);
        DeiTTestSupport.Randomize(original, seed);
        var pruned = (ProgressiveDeiTBlock)BlockRules.For(original).Prune(original);
        RandomizeStatistics(pruned.BatchNorm, new Generator((ulong)seed + 1));
        using (no_grad())
        {
            pruned.BatchNorm.weight.mul_(1.3);
            pruned.BatchNorm.bias!.add_(0.2);
        }
        return (original, pruned);
    }

    private static Tensor Linear(Tensor x, Linear layer) => x.matmul(layer.weight.t()) + layer.bias!;

    /// <summary>x + attn(norm1(x)) with explicit softmax attention.</summary>
    private static Tensor AttentionResidual(DeiTBlock o, Tensor x)
    {
        var (b, n) = (x.shape[0], x.shape[1]);
        var ln = nn.functional.layer_norm(x, [Dim], o.Norm1.weight, o.Norm1.bias, 1e-6);
        var qkv = Linear(ln, o.Attn.Qkv).reshape(b, n, 3, Heads, Dim / Heads).permute(2, 0, 3, 1, 4);
        var a = (qkv[0].matmul(qkv[1].transpose(-2, -1)) / Math.Sqrt(Dim / Heads)).softmax(-1);
        return x + Linear(a.matmul(qkv[2]).transpose(1, 2).reshape(b, n, Dim), o.Attn.Proj);
    }

    /// <summary>The pruned block written out: x' = x + attn(norm1(x)); x' + fc2(fc1(BN(x'))), BN over batch×tokens.</summary>
    private static Tensor PrunedByHand(DeiTBlock o, BatchNorm1d bn, Tensor x, bool training)
    {
        var h = AttentionResidual(o, x);
        var mean = training ? h.mean([0, 1]) : bn.running_mean!;
        var variance = training ? h.var([0L, 1], unbiased: false) : bn.running_var!;
        var n = ((h - mean) / (variance + bn.eps).sqrt() * bn.weight) + bn.bias!;
        return h + Linear(Linear(n, o.Mlp.Fc1), o.Mlp.Fc2);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AtLambdaZeroTheBlockIsTheOriginalBitForBit(bool training)
    {
        using var scope = NewDisposeScope();
        var (original, pruned) = Pair(1);
        original.train(training);
        pruned.train(training);
        var meanBefore = pruned.BatchNorm.running_mean!.clone();
        var x = randn(2, Tokens, Dim);
        Assert.True(Checkpoints.TestSupport.Identical(original.call(x), pruned.call(x)));
        Assert.True(Checkpoints.TestSupport.Identical(meanBefore, pruned.BatchNorm.running_mean!));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AtLambdaOneTheBlockIsTheLinearPrunedBlock(bool training)
    {
        using var scope = NewDisposeScope();
        var (original, pruned) = Pair(2);
        pruned.Lambda = 1;
        pruned.train(training);
        var x = randn(3, Tokens, Dim);
        var expected = PrunedByHand(original, pruned.BatchNorm, x, training);
        var actual = pruned.call(x);
        Assert.True(MaxAbsDiff(actual, expected) < 1e-5 * Math.Max(1, MaxAbs(expected)), $"max diff {MaxAbsDiff(actual, expected)}");
        // GELU and LayerNorm really are gone: the result is far from the original block's.
        Assert.True(MaxAbsDiff(actual, original.call(x)) > 1e-2);
    }

    [Fact]
    public void BetweenTheEndpointsTheOperatorsMixLinearly()
    {
        using var scope = NewDisposeScope();
        var (original, pruned) = Pair(3);
        pruned.eval();
        const double lambda = 0.3;
        pruned.Lambda = lambda;
        var x = randn(2, Tokens, Dim);
        var h = AttentionResidual(original, x);
        var ln = nn.functional.layer_norm(h, [Dim], original.Norm2.weight, original.Norm2.bias, 1e-6);
        var bn = pruned.BatchNorm;
        var bnOut = ((h - bn.running_mean!) / (bn.running_var! + bn.eps).sqrt() * bn.weight) + bn.bias!;
        var f = Linear(((1 - lambda) * ln) + (lambda * bnOut), original.Mlp.Fc1);
        var expected = h + Linear(((1 - lambda) * nn.functional.gelu(f)) + (lambda * f), original.Mlp.Fc2);
        Assert.True(MaxAbsDiff(pruned.call(x), expected) < 1e-5 * Math.Max(1, MaxAbs(expected)));
    }

    [Fact]
    public void AtAPartialLambdaGradientsReachTheBlendedWeights()
    {
        using var scope = NewDisposeScope();
        var (_, pruned) = Pair(4);
        pruned.Lambda = 0.3;
        pruned.train();
        var x = randn(4, Tokens, Dim);
        (pruned.call(x) * randn(4, Tokens, Dim)).sum().backward();
        var grads = pruned.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad);
        foreach (var name in new[] { "norm2.weight", "norm2.bias", "bn.weight", "bn.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "attn.qkv.weight", "norm1.weight" })
        {
            Assert.True(grads[name] is { } g && g.abs().sum().item<float>() > 0, $"no gradient reached {name}");
        }
    }

    [Fact]
    public void PrunedFormSharesTheOriginalWeightsAndAddsOnlyABatchNormStartingFromNorm2()
    {
        using var scope = NewDisposeScope();
        var (original, _) = Pair(5);
        var pruned = (ProgressiveDeiTBlock)BlockRules.For(original).Prune(original);
        var originalParams = original.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var prunedParams = pruned.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(originalParams.Keys.Order().Concat(["bn.bias", "bn.weight"]).Order(), prunedParams.Keys.Order());
        Assert.All(originalParams, kv => Assert.Same(kv.Value, prunedParams[kv.Key]));
        Assert.True(Checkpoints.TestSupport.Identical(original.Norm2.weight, pruned.BatchNorm.weight));
        Assert.True(Checkpoints.TestSupport.Identical(original.Norm2.bias!, pruned.BatchNorm.bias!));
        Assert.Equal(0, pruned.Lambda);
        Assert.Same(original, BlockRules.For(pruned).Unprune(pruned));
    }

    [Fact]
    public void RecalibrationUsesTheStatisticsOverBatchAndTokens()
    {
        using var scope = NewDisposeScope();
        var (original, pruned) = Pair(6);
        pruned.Lambda = 1;
        var g = new Generator(7);
        var batches = new[] { randn([4, Tokens, Dim], generator: g) * 2, randn([3, Tokens, Dim], generator: g) + 1 };

        Assert.Equal(1, BatchNormCalibration.Recalibrate(pruned, batches));

        var stats = batches.Select(x =>
        {
            using var _ = no_grad();
            var h = AttentionResidual(original, x).reshape(-1, Dim);
            return (Mean: h.mean([0]), Var: h.var(0));
        }).ToList();
        Assert.True(MaxAbsDiff(pruned.BatchNorm.running_mean!, stack(stats.Select(s => s.Mean)).mean([0])) < 1e-5);
        Assert.True(MaxAbsDiff(pruned.BatchNorm.running_var!, stack(stats.Select(s => s.Var)).mean([0])) < 1e-4);
    }

    [Fact]
    public void MergedBlockMatchesThePrunedBlockOnItsOwn()
    {
        using var scope = NewDisposeScope();
        var (original, pruned) = Pair(8);
        pruned.Lambda = 1;
        pruned.eval();
        var merged = BlockRules.For(pruned).Merge(pruned);
        merged.eval();
        Assert.Equal(BlockForm.Merged, BlockRules.For(merged).FormOf(merged));
        foreach (var tokens in new[] { 1, 7, 65 })
        {
            var x = randn(2, tokens, Dim);
            var expected = pruned.call(x);
            Assert.True(MaxAbsDiff(merged.call(x), expected) < 1e-5 * Math.Max(1, MaxAbs(expected)), $"{tokens} tokens: {MaxAbsDiff(merged.call(x), expected)}");
            // The MLP branch matters: the agreement is not just attention plus the residual.
            Assert.True(MaxAbsDiff(expected, AttentionResidual(original, x)) > 0.1);
        }
        Assert.Equal(["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "fc.weight", "fc.bias"],
            merged.named_parameters().Select(p => p.name));
        // The merged block owns its tensors: changing the pruned block leaves it alone.
        var before = merged.call(randn(1, 3, Dim, generator: new Generator(9)));
        using (no_grad())
        {
            original.Attn.Qkv.weight.add_(1);
            original.Norm1.weight.add_(1);
        }
        Assert.True(Checkpoints.TestSupport.Identical(before, merged.call(randn(1, 3, Dim, generator: new Generator(9)))));
    }

    public static TheoryData<int[]> Subsets => new()
    {
        new[] { 0 },                        // the first block
        new[] { 11 },                       // the last block
        new[] { 4, 5, 6 },                  // consecutive blocks
        new[] { 1, 3, 5, 7, 9, 11 },        // K = 6, every other block
        Enumerable.Range(0, 12).ToArray(),  // all blocks
    };

    [Theory]
    [MemberData(nameof(Subsets))]
    public void MergedModelComputesWhatThePrunedModelComputes(int[] blocks)
    {
        using var scope = NewDisposeScope();
        using var model = DeiTTestSupport.SmallTiny(200 + blocks.Sum());
        Prune(model, blocks, 1, seed: blocks.Length);
        model.eval();
        var x = Input(1);
        var pruned = model.call(x);
        var before = ModelProfiler.Profile(model, 32);

        var report = Merger.MergeAll(model, [x, Input(2, batch: 3)], randomBatches: 2);

        Assert.Equal(blocks, report.MergedBlocks);
        Assert.All(blocks, i => Assert.Equal(BlockForm.Merged, model.FormOf(i)));
        // An independent check of the report: the merged model against the output taken before.
        var merged = model.call(x);
        var tolerance = 1e-4 * Math.Max(1, MaxAbs(pruned));
        Assert.True(MaxAbsDiff(merged, pruned) <= tolerance, $"max diff {MaxAbsDiff(merged, pruned)} > {tolerance}");
        Assert.True(report.MaxAbsDiff < 1e-5 * Math.Max(1, report.MaxAbsOutput), $"merge error {report.MaxAbsDiff} is larger than float rounding");
        Assert.True(report.MaxAbsOutput > 0.1);

        // Each merged block: 4ND² + 2N²D (attention) + ND² (the one Linear) instead of 12ND² + 2N²D;
        // parameters 2D (norm1) + 4D² + 4D (attention) + D² + D (fc).
        const long n = 65, d = 192;
        var after = ModelProfiler.Profile(model, 32);
        Assert.All(blocks, i => Assert.Equal((5 * n * d * d) + (2 * n * n * d), after.Blocks[i].Macs));
        Assert.All(blocks, i => Assert.Equal((5 * d * d) + (7 * d), after.Blocks[i].Params));
        Assert.Equal(before.Macs - (blocks.Length * 7 * n * d * d), after.Macs);
    }

    [Fact]
    public void AMergeThatForgetsTheResidualIsCaught()
    {
        using var scope = NewDisposeScope();
        using var model = DeiTTestSupport.SmallTiny(30);
        Prune(model, [2, 9], 1, seed: 30);
        var modules = model.Blocks.Select(b => b.Module).ToList();

        nn.Module<Tensor, Tensor> Faulty(nn.Module block)
        {
            var merged = (MergedDeiTBlock)BlockRules.For(block).Merge(block);
            using var _ = no_grad();
            merged.Fc.weight.sub_(eye(192));
            return merged;
        }

        var e = Assert.Throws<MergeVerificationException>(() => Merger.MergeAll(model, [Input(30)], 1, 0, Faulty));
        Assert.Equal([2, 9], e.Blocks);
        Assert.Equal(modules, model.Blocks.Select(b => b.Module));
    }

    [Fact]
    public void AMergedModelSavesAndLoadsWithItsForms()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDir();
        using var model = DeiTTestSupport.SmallTiny(40);
        Prune(model, [0, 5], 1, seed: 40);
        model.Drop(3);
        var x = Input(40);
        Merger.MergeAll(model, [x], randomBatches: 0);
        Prune(model, [7], 0.4, seed: 41);
        model.eval();
        var expected = model.call(x);
        var path = dir.File("merged.safetensors");
        Checkpoint.Save(model, path, PrunedModels.Describe(model, new CheckpointMeta()));

        using var loaded = Checkpoint.Load(path, options: PrunedModels.LoadOptions).Model;

        Assert.Equal([BlockForm.Merged, BlockForm.Original, BlockForm.Dropped, BlockForm.Merged, BlockForm.Pruned],
            new[] { 0, 1, 3, 5, 7 }.Select(loaded.FormOf));
        Assert.Equal(0.4, loaded.PrunedBlocks().Single().Progressive.Lambda);
        Assert.True(Checkpoints.TestSupport.Identical(expected, loaded.call(x)));
    }
}
