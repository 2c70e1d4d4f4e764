using TorchSharp;
using TorchSharp.Modules;
using Updp.Models.ConvNeXt;
using Updp.Pruning;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Pruning;

public class ProgressiveBlockTests
{
    private const int Dim = 8;

    /// <summary>An original block with random weights and its progressive form (sharing them), with random BN statistics.</summary>
    private static (ConvNeXtBlock Original, ProgressiveConvNeXtBlock Pruned) Pair(int seed, bool convMlp = true, double dropPath = 0)
    {
        var original = new ConvNeXtBlock(Dim, convMlp, dropPath);
        Randomize(original, seed);
        var pruned = (ProgressiveConvNeXtBlock)BlockRules.For(original).Prune(original);
        RandomizeStatistics(pruned.BatchNorm, new Generator((ulong)seed + 1));
        using (no_grad())
        {
            pruned.BatchNorm.weight.mul_(1.3);
            pruned.BatchNorm.bias!.add_(0.2);
        }
        return (original, pruned);
    }

    /// <summary>
    /// The pruned block written out from its definition: dw 7×7 (libtorch's grouped convolution) →
    /// BN over channels → fc1 → fc2 (no GELU) → ×gamma → +x; BN uses batch statistics when training.
    /// </summary>
    private static Tensor PrunedByHand(ConvNeXtBlock o, BatchNorm1d bn, Tensor x, bool training)
    {
        var dw = nn.functional.conv2d(x, o.ConvDw.Weight, o.ConvDw.Bias, padding: [3, 3], groups: Dim).permute(0, 2, 3, 1);
        var mean = training ? dw.mean([0, 1, 2]) : bn.running_mean!;
        var variance = training ? dw.var([0L, 1, 2], unbiased: false) : bn.running_var!;
        var n = ((dw - mean) / (variance + bn.eps).sqrt() * bn.weight) + bn.bias!;
        var (w1, b1) = o.Mlp.Fc1;
        var (w2, b2) = o.Mlp.Fc2;
        var y = (n.matmul(w1.t()) + b1).matmul(w2.t()) + b2;
        return (y * o.Gamma).permute(0, 3, 1, 2) + x;
    }

    [Theory]
    [InlineData(true, true)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(false, false)]
    public void AtLambdaZeroTheBlockIsTheOriginalBitForBit(bool convMlp, bool training)
    {
        using var scope = NewDisposeScope();
        var (original, pruned) = Pair(1, convMlp);
        original.train(training);
        pruned.train(training);
        var meanBefore = pruned.BatchNorm.running_mean!.clone();
        foreach (var size in new[] { 6, 10 })
        {
            var x = randn(2, Dim, size, size);
            Assert.True(TestSupportIdentical(original.call(x), pruned.call(x)), $"λ=0 differs from the original at {size}×{size}");
        }
        // λ=0 never runs the batch norm, so training does not move its statistics.
        Assert.True(TestSupportIdentical(meanBefore, pruned.BatchNorm.running_mean!));
    }

    [Theory]
    [InlineData(true, 6)]
    [InlineData(false, 6)]
    [InlineData(true, 10)]
    [InlineData(false, 10)]
    public void AtLambdaOneTheBlockIsTheLinearPrunedBlock(bool training, int size)
    {
        using var scope = NewDisposeScope();
        var (original, pruned) = Pair(2);
        pruned.Lambda = 1;
        pruned.train(training);
        var x = randn(3, Dim, size, size);
        var expected = PrunedByHand(original, pruned.BatchNorm, x, training);
        var actual = pruned.call(x);
        Assert.True(MaxAbsDiff(actual, expected) < 1e-5 * Math.Max(1, MaxAbs(expected)), $"max diff {MaxAbsDiff(actual, expected)}");
        // GELU really is gone: the result is far from the original block's.
        Assert.True(MaxAbsDiff(actual, original.call(x)) > 1e-2);
    }

    [Fact]
    public void BetweenTheEndpointsTheOperatorsMixLinearly()
    {
        using var scope = NewDisposeScope();
        var (original, pruned) = Pair(3);
        pruned.eval();
        original.eval();
        var x = randn(2, Dim, 6, 6);
        // norm_λ = (1−λ)·LN + λ·BN and act_λ = (1−λ)·GELU + λ·id, written out.
        const double lambda = 0.3;
        pruned.Lambda = lambda;
        var dw = nn.functional.conv2d(x, original.ConvDw.Weight, original.ConvDw.Bias, padding: [3, 3], groups: Dim).permute(0, 2, 3, 1);
        var (lw, lb) = original.NormParameters;
        var ln = nn.functional.layer_norm(dw, [Dim], lw, lb, 1e-6);
        var bn = pruned.BatchNorm;
        var bnOut = ((dw - bn.running_mean!) / (bn.running_var! + bn.eps).sqrt() * bn.weight) + bn.bias!;
        var norm = ((1 - lambda) * ln) + (lambda * bnOut);
        var (w1, b1) = original.Mlp.Fc1;
        var (w2, b2) = original.Mlp.Fc2;
        var h = norm.matmul(w1.t()) + b1;
        var act = ((1 - lambda) * nn.functional.gelu(h)) + (lambda * h);
        var expected = ((act.matmul(w2.t()) + b2) * original.Gamma).permute(0, 3, 1, 2) + x;
        Assert.True(MaxAbsDiff(pruned.call(x), expected) < 1e-5 * Math.Max(1, MaxAbs(expected)));
    }

    [Fact]
    public void AtAPartialLambdaGradientsReachLayerNormBatchNormAndMlp()
    {
        using var scope = NewDisposeScope();
        var (_, pruned) = Pair(4, convMlp: true);
        pruned.Lambda = 0.3;
        pruned.train();
        var x = randn(4, Dim, 6, 6);
        (pruned.call(x) * randn(4, Dim, 6, 6)).sum().backward();
        var grads = pruned.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad);
        foreach (var name in new[] { "norm.weight", "norm.bias", "bn.weight", "bn.bias", "mlp.fc1.weight", "mlp.fc2.weight", "conv_dw.weight", "gamma" })
        {
            Assert.True(grads[name] is { } g && g.abs().sum().item<float>() > 0, $"no gradient reached {name}");
        }
    }

    [Fact]
    public void PrunedFormSharesTheOriginalWeightsAndAddsOnlyABatchNorm()
    {
        using var scope = NewDisposeScope();
        var (original, pruned) = Pair(5);
        var originalParams = original.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var prunedParams = pruned.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(originalParams.Keys.Order().Concat(["bn.bias", "bn.weight"]).Order(), prunedParams.Keys.Order());
        foreach (var (name, p) in originalParams)
        {
            Assert.True(ReferenceEquals(p, prunedParams[name]), $"{name} is not shared");
        }
        Assert.Equal(["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"], pruned.named_buffers().Select(b => b.name));
    }

    [Fact]
    public void BatchNormStartsFromTheLayerNormAffine()
    {
        using var scope = NewDisposeScope();
        var original = new ConvNeXtBlock(Dim, convMlp: false, dropPath: 0);
        Randomize(original, 6);
        var pruned = (IProgressiveBlock)BlockRules.For(original).Prune(original);
        var (w, b) = original.NormParameters;
        var bn = Assert.Single(pruned.BatchNorms);
        Assert.True(TestSupportIdentical(w, bn.weight));
        Assert.True(TestSupportIdentical(b, bn.bias!));
        Assert.Equal(0, pruned.Lambda);
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void LambdaOutsideTheUnitIntervalIsRejected(double lambda)
    {
        using var scope = NewDisposeScope();
        var (_, pruned) = Pair(7);
        Assert.Throws<ArgumentOutOfRangeException>(() => pruned.Lambda = lambda);
    }

    [Fact]
    public void RecalibrationAveragesTheBatchStatisticsOfTheBatchesThatReachEachNorm()
    {
        using var scope = NewDisposeScope();
        // Stochastic depth on: recalibration must run it in eval mode, or the batches reaching the
        // second block would be random.
        var (originalA, a) = Pair(8, dropPath: 0.5);
        var (_, b) = Pair(9, dropPath: 0.5);
        var (_, c) = Pair(10);
        a.Lambda = 1;
        b.Lambda = 0.5;
        c.Lambda = 0; // never reaches its batch norm: its statistics must stay
        var model = nn.Sequential(a, b, c);
        model.train();
        var cMean = c.BatchNorm.running_mean!.clone();
        var cVar = c.BatchNorm.running_var!.clone();
        var g = new Generator(11);
        var batches = new[] { randn([4, Dim, 6, 6], generator: g) * 2, randn([3, Dim, 6, 6], generator: g) + 1, randn([5, Dim, 6, 6], generator: g) };

        var recalibrated = BatchNormCalibration.Recalibrate(model, batches);

        Assert.Equal(2, recalibrated);
        Assert.True(model.training && a.training && b.training && c.BatchNorm.training);
        Assert.True(a.BatchNorm.momentum is 0.1);
        // Block a's norm sees conv_dw(x): the per-batch mean and unbiased variance, averaged over batches.
        var stats = batches.Select(x =>
        {
            var dw = nn.functional.conv2d(x, originalA.ConvDw.Weight, originalA.ConvDw.Bias, padding: [3, 3], groups: Dim)
                .permute(0, 2, 3, 1).reshape(-1, Dim);
            return (Mean: dw.mean([0]), Var: dw.var(0));
        }).ToList();
        var expectedMean = stack(stats.Select(s => s.Mean)).mean([0]);
        var expectedVar = stack(stats.Select(s => s.Var)).mean([0]);
        Assert.True(MaxAbsDiff(a.BatchNorm.running_mean!, expectedMean) < 1e-5, $"mean off by {MaxAbsDiff(a.BatchNorm.running_mean!, expectedMean)}");
        Assert.True(MaxAbsDiff(a.BatchNorm.running_var!, expectedVar) < 1e-4, $"var off by {MaxAbsDiff(a.BatchNorm.running_var!, expectedVar)}");
        // Block b's input is block a's output with a's norm in train mode (batch statistics), as
        // every calibrated norm runs; the rest of a in eval mode (no stochastic depth).
        a.eval();
        a.BatchNorm.train();
        var bStats = batches.Select(x =>
        {
            using var _ = no_grad();
            var dw = b.ConvDw.call(a.call(x)).permute(0, 2, 3, 1).reshape(-1, Dim);
            return (Mean: dw.mean([0]), Var: dw.var(0));
        }).ToList();
        Assert.True(MaxAbsDiff(b.BatchNorm.running_mean!, stack(bStats.Select(s => s.Mean)).mean([0])) < 1e-5);
        Assert.True(MaxAbsDiff(b.BatchNorm.running_var!, stack(bStats.Select(s => s.Var)).mean([0])) < 1e-4);
        Assert.True(TestSupportIdentical(cMean, c.BatchNorm.running_mean!));
        Assert.True(TestSupportIdentical(cVar, c.BatchNorm.running_var!));
    }

    [Fact]
    public void RecalibrationRestoresEvalMode()
    {
        using var scope = NewDisposeScope();
        var (_, pruned) = Pair(12);
        pruned.Lambda = 1;
        pruned.eval();
        BatchNormCalibration.Recalibrate(pruned, [randn(2, Dim, 4, 4)]);
        Assert.False(pruned.training);
        Assert.False(pruned.BatchNorm.training);
    }

    private static bool TestSupportIdentical(Tensor a, Tensor b) => Updp.Tests.Checkpoints.TestSupport.Identical(a, b);
}
