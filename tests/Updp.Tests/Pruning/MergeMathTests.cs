using TorchSharp;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Tests.Pruning;

public class MergeMathTests
{
    [Fact]
    public void FoldBatchNormScalesEachOutputChannel()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(1);
        const int c = 3;
        var w = randn([c, 1, 3, 3], float64, generator: g);
        var b = randn([c], float64, generator: g);
        var mean = randn([c], float64, generator: g);
        var variance = rand([c], float64, generator: g) + 0.5;
        var gamma = randn([c], float64, generator: g);
        var beta = randn([c], float64, generator: g);
        const double eps = 1e-3;

        var (wf, bf) = MergeMath.FoldBatchNorm(w, b, mean, variance, gamma, beta, eps);

        var (W, B, M, V, G, Be) = (w.data<double>().ToArray(), b.data<double>().ToArray(), mean.data<double>().ToArray(),
            variance.data<double>().ToArray(), gamma.data<double>().ToArray(), beta.data<double>().ToArray());
        var (WF, BF) = (wf.contiguous().data<double>().ToArray(), bf.data<double>().ToArray());
        for (var o = 0; o < c; o++)
        {
            var s = G[o] / Math.Sqrt(V[o] + eps);
            Assert.Equal(s * (B[o] - M[o]) + Be[o], BF[o], 12);
            for (var k = 0; k < 9; k++)
            {
                Assert.Equal(s * W[o * 9 + k], WF[o * 9 + k], 12);
            }
        }
    }

    [Fact]
    public void FoldedLayerComputesTheLayerFollowedByTheBatchNorm()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(2);
        const int c = 4;
        var w = randn([c, 1, 3, 3], float64, generator: g);
        var b = randn([c], float64, generator: g);
        var mean = randn([c], float64, generator: g);
        var variance = rand([c], float64, generator: g) + 0.5;
        var gamma = randn([c], float64, generator: g);
        var beta = randn([c], float64, generator: g);
        var x = randn([2, c, 5, 5], float64, generator: g);

        var y = nn.functional.conv2d(x, w, b, padding: [1, 1], groups: c);
        var expected = nn.functional.batch_norm(y, mean, variance, gamma, beta, training: false, eps: 1e-5);
        var (wf, bf) = MergeMath.FoldBatchNorm(w, b, mean, variance, gamma, beta, 1e-5);
        var actual = nn.functional.conv2d(x, wf, bf, padding: [1, 1], groups: c);
        Assert.True(actual.allclose(expected, rtol: 1e-10, atol: 1e-12));
    }

    [Fact]
    public void ComposeLinearMatchesAMatrixProductLoop()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        const int n = 3, h = 5, m = 2;
        var w1 = randn([h, n], float64, generator: g);
        var b1 = randn([h], float64, generator: g);
        var w2 = randn([m, h], float64, generator: g);
        var b2 = randn([m], float64, generator: g);

        var (w, b) = MergeMath.ComposeLinear(w1, b1, w2, b2);

        var (W1, B1, W2, B2) = (w1.data<double>().ToArray(), b1.data<double>().ToArray(), w2.data<double>().ToArray(), b2.data<double>().ToArray());
        var (W, B) = (w.contiguous().data<double>().ToArray(), b.data<double>().ToArray());
        Assert.Equal([m, n], w.shape);
        for (var i = 0; i < m; i++)
        {
            var bias = B2[i];
            for (var k = 0; k < h; k++)
            {
                bias += W2[i * h + k] * B1[k];
            }
            Assert.Equal(bias, B[i], 12);
            for (var j = 0; j < n; j++)
            {
                var sum = 0.0;
                for (var k = 0; k < h; k++)
                {
                    sum += W2[i * h + k] * W1[k * n + j];
                }
                Assert.Equal(sum, W[i * n + j], 12);
            }
        }
        // And as functions: applying the composed layer equals applying both.
        var x = randn([7, n], float64, generator: g);
        var twice = nn.functional.linear(nn.functional.linear(x, w1, b1), w2, b2);
        Assert.True(nn.functional.linear(x, w, b).allclose(twice, rtol: 1e-10, atol: 1e-12));
    }

    [Fact]
    public void ScaleRowsScalesRowsAndBias()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(4);
        var s = randn([3], float64, generator: g);
        var w = randn([3, 2], float64, generator: g);
        var b = randn([3], float64, generator: g);

        var (ws, bs) = MergeMath.ScaleRows(s, w, b);

        var (S, W, B) = (s.data<double>().ToArray(), w.data<double>().ToArray(), b.data<double>().ToArray());
        var (WS, BS) = (ws.contiguous().data<double>().ToArray(), bs.data<double>().ToArray());
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(S[i] * B[i], BS[i], 14);
            for (var j = 0; j < 2; j++)
            {
                Assert.Equal(S[i] * W[i * 2 + j], WS[i * 2 + j], 14);
            }
        }
    }
}
