using TorchSharp;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Tests.Models;

public class DepthwiseConv2dTests
{
    /// <summary>A direct loop over the definition of a zero-padded depthwise convolution.</summary>
    private static float[,,,] NaiveDepthwise(float[,,,] x, float[,,] w, float[] b)
    {
        int n = x.GetLength(0), c = x.GetLength(1), h = x.GetLength(2), wd = x.GetLength(3), k = w.GetLength(1), r = k / 2;
        var y = new float[n, c, h, wd];
        for (var i = 0; i < n; i++)
        {
            for (var ch = 0; ch < c; ch++)
            {
                for (var oy = 0; oy < h; oy++)
                {
                    for (var ox = 0; ox < wd; ox++)
                    {
                        double acc = b[ch];
                        for (var ky = 0; ky < k; ky++)
                        {
                            for (var kx = 0; kx < k; kx++)
                            {
                                int iy = oy + ky - r, ix = ox + kx - r;
                                if (iy >= 0 && iy < h && ix >= 0 && ix < wd)
                                {
                                    acc += w[ch, ky, kx] * x[i, ch, iy, ix];
                                }
                            }
                        }
                        y[i, ch, oy, ox] = (float)acc;
                    }
                }
            }
        }
        return y;
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 4)]
    [InlineData(2, 2)]
    [InlineData(3, 5)]
    [InlineData(4, 4)]
    [InlineData(8, 8)]
    [InlineData(9, 12)]
    [InlineData(16, 16)]
    public void EveryPathMatchesANaiveLoop(int h, int w)
    {
        using var scope = NewDisposeScope();
        random.manual_seed(h * 100 + w);
        const int n = 2, c = 3, k = 7;
        using var conv = new DepthwiseConv2d(c, k);
        var x = randn(n, c, h, w);
        var expected = NaiveDepthwise(
            To4D(x), To3D(conv.Weight.detach().reshape(c, k, k)), conv.Bias.detach().data<float>().ToArray());

        var paths = new List<(string Path, Tensor Y)>
        {
            ("module, inference", conv.call(x)),
            ("module, training", conv.call(x.clone().requires_grad_())),
            ("libtorch convolution", conv.ConvolutionForward(x)),
        };
        foreach (var (path, y) in paths)
        {
            Assert.Equal([n, c, h, w], y.shape);
            var actual = To4D(y);
            for (var i = 0; i < n; i++)
            {
                for (var ch = 0; ch < c; ch++)
                {
                    for (var oy = 0; oy < h; oy++)
                    {
                        for (var ox = 0; ox < w; ox++)
                        {
                            Assert.True(Math.Abs(expected[i, ch, oy, ox] - actual[i, ch, oy, ox]) < 1e-5,
                                $"{path} at [{i},{ch},{oy},{ox}]: {actual[i, ch, oy, ox]} vs naive {expected[i, ch, oy, ox]}");
                        }
                    }
                }
            }
        }
    }

    [Theory]
    [InlineData(1, 1, false)]
    [InlineData(2, 2, false)]
    [InlineData(8, 8, false)]
    [InlineData(2, 2, true)]
    [InlineData(4, 4, true)]
    [InlineData(8, 8, true)]
    [InlineData(3, 5, true)]
    [InlineData(1, 6, true)]
    [InlineData(9, 9, true)]
    public void GradientsMatchLibtorchs(int h, int w, bool channelsLastGradient)
    {
        using var scope = NewDisposeScope();
        random.manual_seed((h * 10) + w);
        using var conv = new DepthwiseConv2d(4, 7);
        var x = randn(3, 4, h, w);
        // A channels-last consumer (LayerNorm over C, as in ConvNeXt) sends back a gradient strided that way.
        var target = channelsLastGradient ? randn(3, h, w, 4).permute(0, 3, 1, 2) : randn(3, 4, h, w);

        Tensor[] Grads(Func<Tensor, Tensor> f)
        {
            conv.zero_grad();
            var xi = x.clone().requires_grad_();
            f(xi).backward([target]);
            return [xi.grad!.clone(), conv.Weight.grad!.clone(), conv.Bias.grad!.clone()];
        }

        var reference = Grads(conv.ConvolutionForward);
        var paths = new List<(string Path, Tensor[] Grads)> { ("module", Grads(conv.call)) };
        string[] names = ["input", "weight", "bias"];
        foreach (var (path, grads) in paths)
        {
            for (var i = 0; i < grads.Length; i++)
            {
                var diff = (grads[i] - reference[i]).abs().max().item<float>();
                Assert.True(grads[i].allclose(reference[i], rtol: 1e-4, atol: 1e-5), $"{path}: {names[i]} gradient differs by {diff}");
            }
            // A tap reaches an output only where the map is large enough; the others get no gradient.
            var g = grads[1].reshape(4, 7, 7).abs().sum(dim: 0);
            for (var ky = 0; ky < 7; ky++)
            {
                for (var kx = 0; kx < 7; kx++)
                {
                    var reaches = Math.Abs(ky - 3) < h && Math.Abs(kx - 3) < w;
                    Assert.True(reaches == (g[ky, kx].item<float>() > 0), $"{path}: tap ({ky},{kx}) on a {h}x{w} map");
                }
            }
        }
    }

    [Fact]
    public void WeightGradientWithoutAnInputGradient()
    {
        // An input that needs no gradient (earlier layers frozen) still trains the weights.
        using var scope = NewDisposeScope();
        random.manual_seed(7);
        using var conv = new DepthwiseConv2d(6, 7);
        var x = randn(5, 4, 4, 6).permute(0, 3, 1, 2);
        var target = randn(5, 6, 4, 4);
        Tensor[] Grads(Func<Tensor, Tensor> f)
        {
            conv.zero_grad();
            (f(x) * target).sum().backward();
            return [conv.Weight.grad!.clone(), conv.Bias.grad!.clone()];
        }
        var reference = Grads(conv.ConvolutionForward);
        var module = Grads(conv.call);
        Assert.False(x.requires_grad);
        Assert.True(module[0].allclose(reference[0], rtol: 1e-4, atol: 1e-5), "weight gradient differs");
        Assert.True(module[1].allclose(reference[1], rtol: 1e-4, atol: 1e-5), "bias gradient differs");
    }

    [Fact]
    public void ParametersCarryConv2dNames()
    {
        using var conv = new DepthwiseConv2d(5, 7);
        var names = conv.named_parameters().Select(p => (p.name, string.Join(",", p.parameter.shape))).ToList();
        Assert.Equal([("weight", "5,1,7,7"), ("bias", "5")], names);
    }

    private static float[,,,] To4D(Tensor t)
    {
        var s = t.shape;
        var flat = t.detach().contiguous().data<float>().ToArray();
        var a = new float[s[0], s[1], s[2], s[3]];
        Buffer.BlockCopy(flat, 0, a, 0, flat.Length * sizeof(float));
        return a;
    }

    private static float[,,] To3D(Tensor t)
    {
        var s = t.shape;
        var flat = t.detach().contiguous().data<float>().ToArray();
        var a = new float[s[0], s[1], s[2]];
        Buffer.BlockCopy(flat, 0, a, 0, flat.Length * sizeof(float));
        return a;
    }
}
