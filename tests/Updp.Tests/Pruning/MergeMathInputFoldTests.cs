using TorchSharp;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Tests.Pruning;

/// <summary>The merge algebra DeiT's MLP merge is built from: a batch norm folded into the layer after it, a residual folded into a weight.</summary>
public class MergeMathInputFoldTests
{
    [Fact]
    public void FoldInputBatchNormMatchesALoop()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(11);
        const int c = 4, h = 3;
        var w = randn([h, c], float64, generator: g);
        var b = randn([h], float64, generator: g);
        var mean = randn([c], float64, generator: g);
        var variance = rand([c], float64, generator: g) + 0.5;
        var gamma = randn([c], float64, generator: g);
        var beta = randn([c], float64, generator: g);
        const double eps = 1e-3;

        var (wf, bf) = MergeMath.FoldInputBatchNorm(w, b, mean, variance, gamma, beta, eps);

        var (W, B, M, V, G, Be) = (w.data<double>().ToArray(), b.data<double>().ToArray(), mean.data<double>().ToArray(),
            variance.data<double>().ToArray(), gamma.data<double>().ToArray(), beta.data<double>().ToArray());
        var (WF, BF) = (wf.contiguous().data<double>().ToArray(), bf.data<double>().ToArray());
        Assert.Equal([h, c], wf.shape);
        for (var o = 0; o < h; o++)
        {
            var bias = B[o];
            for (var i = 0; i < c; i++)
            {
                var s = G[i] / Math.Sqrt(V[i] + eps);
                Assert.Equal(W[o * c + i] * s, WF[o * c + i], 12);
                bias += W[o * c + i] * (Be[i] - s * M[i]);
            }
            Assert.Equal(bias, BF[o], 12);
        }
    }

    [Fact]
    public void TheMergedMlpComputesTheResidualBranchItReplaces()
    {
        // x + fc2(fc1(BN(x))) in eval mode equals one Linear: W = I + W2·W1·diag(s), b = W2·(W1·(β − s⊙μ) + b1) + b2.
        using var scope = NewDisposeScope();
        var g = new Generator(12);
        const int c = 5, hidden = 20;
        var mean = randn([c], float64, generator: g);
        var variance = rand([c], float64, generator: g) + 0.5;
        var gamma = randn([c], float64, generator: g);
        var beta = randn([c], float64, generator: g);
        var w1 = randn([hidden, c], float64, generator: g);
        var b1 = randn([hidden], float64, generator: g);
        var w2 = randn([c, hidden], float64, generator: g);
        var b2 = randn([c], float64, generator: g);
        var x = randn([3, 7, c], float64, generator: g);

        var bn = nn.functional.batch_norm(x.reshape(-1, c), mean, variance, gamma, beta, training: false, eps: 1e-5).view(x.shape);
        var expected = x + nn.functional.linear(nn.functional.linear(bn, w1, b1), w2, b2);
        var (wf, bf) = MergeMath.FoldInputBatchNorm(w1, b1, mean, variance, gamma, beta, 1e-5);
        var (w, b) = MergeMath.ComposeLinear(wf, bf, w2, b2);
        var actual = nn.functional.linear(x, MergeMath.AddIdentity(w), b);

        Assert.True(actual.allclose(expected, rtol: 1e-10, atol: 1e-10));
    }

    [Fact]
    public void AddIdentityAddsOneOnTheDiagonalOnly()
    {
        using var scope = NewDisposeScope();
        var w = randn([3, 3], float64, generator: new Generator(13));
        var plus = MergeMath.AddIdentity(w);
        var (W, P) = (w.data<double>().ToArray(), plus.contiguous().data<double>().ToArray());
        for (var i = 0; i < 9; i++)
        {
            Assert.Equal(W[i] + (i % 4 == 0 ? 1 : 0), P[i], 14);
        }
        Assert.Throws<ArgumentException>(() => MergeMath.AddIdentity(randn(3, 4)));
    }
}
