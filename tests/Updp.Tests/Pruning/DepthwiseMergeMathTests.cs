using TorchSharp;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Tests.Pruning;

/// <summary>The merge algebra of pointwise and depthwise convs (<see cref="MergeMath"/>), each function against a naive computation.</summary>
public class DepthwiseMergeMathTests
{
    private static bool Close(Tensor a, Tensor b) => a.allclose(b, rtol: 1e-10, atol: 1e-10);

    [Fact]
    public void DepthwiseAfterPointwiseMatchesAnElementLoop()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(1);
        const int c = 3, m = 4;
        var a = randn([m, c, 1, 1], float64, generator: g);
        var ab = randn([m], float64, generator: g);
        var d = randn([m, 1, 3, 3], float64, generator: g);
        var db = randn([m], float64, generator: g);

        var (w, b) = MergeMath.ComposeDepthwiseAfterPointwise(a, ab, d, db);

        Assert.Equal([m, c, 3, 3], w.shape);
        var (A, AB, D, DB) = (a.data<double>().ToArray(), ab.data<double>().ToArray(), d.data<double>().ToArray(), db.data<double>().ToArray());
        var (W, B) = (w.contiguous().data<double>().ToArray(), b.data<double>().ToArray());
        for (var o = 0; o < m; o++)
        {
            var sum = 0.0;
            for (var k = 0; k < 9; k++)
            {
                sum += D[(o * 9) + k];
                for (var i = 0; i < c; i++)
                {
                    Assert.Equal(D[(o * 9) + k] * A[(o * c) + i], W[(((o * c) + i) * 9) + k], 12);
                }
            }
            Assert.Equal(DB[o] + (AB[o] * sum), B[o], 12);
        }
    }

    [Theory]
    [InlineData(1, 6)]
    [InlineData(2, 7)]
    public void DepthwiseAfterPointwiseWithThePaddingOnTheInputIsOneConv(int stride, int size)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(2);
        const int c = 3, m = 5;
        var a = randn([m, c, 1, 1], float64, generator: g);
        var ab = randn([m], float64, generator: g);
        var d = randn([m, 1, 3, 3], float64, generator: g);
        var db = randn([m], float64, generator: g);
        var x = randn([2, c, size, size], float64, generator: g);

        // Pad the input, then 1×1 (with bias) and the depthwise 3×3 without padding.
        var pw = nn.functional.conv2d(nn.functional.pad(x, [1, 1, 1, 1]), a, ab);
        var expected = nn.functional.conv2d(pw, d, db, strides: [stride, stride], groups: m);
        var (w, b) = MergeMath.ComposeDepthwiseAfterPointwise(a, ab, d, db);
        var actual = nn.functional.conv2d(x, w, b, strides: [stride, stride], padding: [1, 1]);
        Assert.True(Close(actual, expected));
    }

    [Fact]
    public void PointwiseAfterAConvIsOneConv()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var w = randn([5, 3, 3, 3], float64, generator: g);
        var b = randn([5], float64, generator: g);
        var p = randn([4, 5, 1, 1], float64, generator: g);
        var pb = randn([4], float64, generator: g);
        var x = randn([2, 3, 7, 7], float64, generator: g);

        var expected = nn.functional.conv2d(nn.functional.conv2d(x, w, b, strides: [2, 2], padding: [1, 1]), p, pb);
        var (wc, bc) = MergeMath.ComposePointwiseAfterConv(w, b, p, pb);
        Assert.Equal([4, 3, 3, 3], wc.shape);
        Assert.True(Close(nn.functional.conv2d(x, wc, bc, strides: [2, 2], padding: [1, 1]), expected));
        // A [O, M] matrix works as well as a [O, M, 1, 1] kernel.
        var (wm, bm) = MergeMath.ComposePointwiseAfterConv(w, b, p.flatten(1), pb);
        Assert.True(Close(wm, wc) && Close(bm, bc));
    }

    [Fact]
    public void IdentityInTheCentreTapAddsTheInput()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(4);
        var w = randn([4, 4, 3, 3], float64, generator: g);
        var b = randn([4], float64, generator: g);
        var x = randn([2, 4, 5, 5], float64, generator: g);
        var copy = w.clone();

        var folded = MergeMath.AddIdentityToCentreTap(w);

        Assert.True(Close(nn.functional.conv2d(x, folded, b, padding: [1, 1]), nn.functional.conv2d(x, w, b, padding: [1, 1]) + x));
        // Only the centre tap's diagonal changed; the input is not modified.
        var delta = folded - w;
        Assert.Equal(4.0, delta.sum().item<double>(), 12);
        Assert.Equal(4.0, delta.select(2, 1).select(2, 1).diagonal().sum().item<double>(), 12);
        Assert.True(Checkpoints.TestSupport.Identical(w, copy));
        Assert.Throws<ArgumentException>(() => MergeMath.AddIdentityToCentreTap(randn([4, 3, 3, 3], float64)));
        Assert.Throws<ArgumentException>(() => MergeMath.AddIdentityToCentreTap(randn([4, 4, 2, 2], float64)));
    }
}
