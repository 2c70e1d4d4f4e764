using TorchSharp;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Tests.Models;

public class DepthwiseConvolutionTests
{
    [Theory]
    // MobileNetV2's 3×3 depthwise convs, stride 1 and 2, on the small maps of small inputs.
    [InlineData(6, 1, 1, 3, 3, 1, 1, 1, false, false)]
    [InlineData(6, 2, 2, 3, 3, 1, 1, 1, false, false)]
    [InlineData(6, 5, 5, 3, 3, 1, 1, 1, false, true)]
    [InlineData(6, 8, 8, 3, 3, 1, 1, 1, false, false)]
    [InlineData(6, 2, 2, 3, 3, 2, 1, 1, false, false)]
    [InlineData(6, 4, 4, 3, 3, 2, 1, 1, false, true)]
    [InlineData(6, 7, 5, 3, 3, 2, 1, 1, true, false)]
    // The pruned MobileNetV2 block pads itself and convolves without padding.
    [InlineData(6, 6, 6, 3, 3, 2, 0, 0, false, false)]
    // ConvNeXt's 7×7 and its cropped kernels, with bias; a non-square kernel.
    [InlineData(5, 8, 8, 7, 7, 1, 3, 3, true, true)]
    [InlineData(5, 2, 3, 3, 5, 1, 1, 2, true, false)]
    public void ForwardAndGradientsMatchLibtorchs(int c, int h, int w, int kh, int kw, int stride, int padH, int padW, bool withBias, bool channelsLast)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)((h * 1000) + (w * 100) + (kh * 10) + stride));
        var x = randn([3, c, h, w], generator: gen);
        if (channelsLast)
        {
            x = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
        }
        var weight = randn([c, 1, kh, kw], generator: gen);
        var bias = withBias ? randn([c], generator: gen) : null;
        long[] padding = [padH, padW];
        Assert.True(h * w <= DepthwiseConvolution.MatrixGradientMaxPositions);

        Tensor[] Run(Func<Tensor, Tensor, Tensor?, Tensor> conv, Tensor target)
        {
            var xi = x.detach().requires_grad_();
            var wi = weight.detach().requires_grad_();
            var bi = bias?.detach().requires_grad_();
            var y = conv(xi, wi, bi);
            y.backward([target]);
            return bi is null ? [y.detach(), xi.grad!, wi.grad!] : [y.detach(), xi.grad!, wi.grad!, bi.grad!];
        }

        Tensor Libtorch(Tensor xi, Tensor wi, Tensor? bi) => nn.functional.conv2d(xi, wi, bi, strides: [stride, stride], padding: padding, groups: c);
        var target = randn(Libtorch(x, weight, bias).shape, generator: gen);
        var reference = Run(Libtorch, target);
        var geometry = new TapGeometry(h, w, kh, kw, stride, padH, padW);
        var taps = DepthwiseConvolution.TapIndex(geometry, x.device);
        var paths = new (string Name, Tensor[] Results)[]
        {
            ("DepthwiseConvolution.Conv2d", Run((xi, wi, bi) => DepthwiseConvolution.Conv2d(xi, wi, bi, stride, padding), target)),
            ("SmallMapDepthwiseConv", Run((xi, wi, bi) => bi is null
                ? SmallMapDepthwiseConv.Apply(xi, wi, geometry, taps)
                : SmallMapDepthwiseConv.Apply(xi, wi, bi, geometry, taps), target)),
        };
        string[] names = ["output", "input gradient", "weight gradient", "bias gradient"];
        foreach (var (name, results) in paths)
        {
            Assert.Equal(reference.Length, results.Length);
            for (var i = 0; i < results.Length; i++)
            {
                Assert.Equal(reference[i].shape, results[i].shape);
                var diff = (results[i] - reference[i]).abs().max().item<float>();
                Assert.True(results[i].allclose(reference[i], rtol: 1e-4, atol: 1e-5), $"{name}: {names[i]} differs by {diff}");
            }
        }
    }

    [Fact]
    public void TapIndexLinksEachOutputToTheInputsItsKernelCovers()
    {
        // 3×3 kernel, stride 2, padding 1 on a 4×4 map: output (0,0) covers inputs (0..1, 0..1) with
        // taps (1..2, 1..2); output (1,1) covers inputs (1..3, 1..3) with every tap.
        var g = new TapGeometry(4, 4, 3, 3, 2, 1, 1);
        Assert.Equal(2, g.OutH);
        var index = DepthwiseConvolution.TapIndex(g, CPU).view(4, 16);
        long Tap(int output, int iy, int ix) => index[output, (iy * 4) + ix].item<long>();
        Assert.Equal(4, Tap(0, 0, 0));
        Assert.Equal(5, Tap(0, 0, 1));
        Assert.Equal(8, Tap(0, 1, 1));
        Assert.Equal(9, Tap(0, 0, 2));
        Assert.Equal(0, Tap(3, 1, 1));
        Assert.Equal(8, Tap(3, 3, 3));
        Assert.Equal(9, Tap(3, 0, 0));
    }

    [Theory]
    // MobileNetV2's 3×3 at stride 1 and 2, ConvNeXt's 7×7 (cropped to 5×5 on 3×3 maps), a non-square kernel without padding.
    [InlineData(4, 5, 5, 3, 3, 1, 1, 1, true)]
    [InlineData(4, 6, 6, 3, 3, 2, 1, 1, false)]
    [InlineData(3, 8, 8, 7, 7, 1, 3, 3, true)]
    [InlineData(3, 3, 3, 5, 5, 1, 2, 2, true)]
    [InlineData(2, 4, 5, 3, 2, 1, 0, 0, false)]
    public void PlainLibtorchFallbackMatchesTheFastPathAndANaiveLoop(int c, int h, int w, int kh, int kw, int stride, int padH, int padW, bool withBias)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)((c * 10000) + (h * 1000) + (w * 100) + (kh * 10) + stride));
        var x = randn([2, c, h, w], generator: gen);
        var weight = randn([c, 1, kh, kw], generator: gen);
        var bias = withBias ? randn([c], generator: gen) : null;
        long[] padding = [padH, padW];
        var outH = ((h + (2 * padH) - kh) / stride) + 1;
        var outW = ((w + (2 * padW) - kw) / stride) + 1;
        var target = randn([2, c, outH, outW], generator: gen);

        (Tensor[] Results, bool Fast) Run()
        {
            var xi = x.detach().requires_grad_();
            var wi = weight.detach().requires_grad_();
            var bi = bias?.detach().requires_grad_();
            var fast = DepthwiseConvolution.UsesSmallMapGradient(xi, wi, bi);
            var y = DepthwiseConvolution.Conv2d(xi, wi, bi, stride, padding);
            y.backward([target]);
            return (bi is null ? [y.detach(), xi.grad!, wi.grad!] : [y.detach(), xi.grad!, wi.grad!, bi.grad!], fast);
        }

        var fastPath = Run();
        (Tensor[] Results, bool Fast) fallback;
        using (CpuFastPaths.UsePlainLibtorch())
        {
            fallback = Run();
        }
        // The switch is per thread and ends with its scope.
        Assert.True(fastPath.Fast, "outside the switch a small map with gradients takes the fast path");
        Assert.False(fallback.Fast, "inside the switch the CPU takes libtorch's convolution");
        Assert.True(DepthwiseConvolution.UsesSmallMapGradient(x.detach().requires_grad_(), weight, bias));

        var naive = NaiveDepthwise(x, weight, bias, target, stride, padH, padW);
        string[] names = ["output", "input gradient", "weight gradient", "bias gradient"];
        foreach (var (name, results) in new[] { ("fast path", fastPath.Results), ("fallback", fallback.Results) })
        {
            Assert.Equal(naive.Length, results.Length);
            for (var i = 0; i < results.Length; i++)
            {
                Assert.Equal(naive[i].shape, results[i].shape);
                var diff = (results[i] - naive[i]).abs().max().item<float>();
                Assert.True(results[i].allclose(naive[i], rtol: 1e-4, atol: 1e-5), $"{name}: {names[i]} differs from the loops by {diff}");
            }
        }
    }

    /// <summary>Output and gradients of a depthwise convolution by explicit loops in double precision, for output gradient <paramref name="target"/>.</summary>
    private static Tensor[] NaiveDepthwise(Tensor x, Tensor weight, Tensor? bias, Tensor target, int stride, int padH, int padW)
    {
        int n = (int)x.shape[0], c = (int)x.shape[1], h = (int)x.shape[2], w = (int)x.shape[3];
        int kh = (int)weight.shape[2], kw = (int)weight.shape[3], oh = (int)target.shape[2], ow = (int)target.shape[3];
        var xs = x.to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
        var ws = weight.to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
        var bs = bias?.to_type(ScalarType.Float64).data<double>().ToArray();
        var gs = target.to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
        var y = new double[n * c * oh * ow];
        var dx = new double[xs.Length];
        var dw = new double[ws.Length];
        var db = new double[c];
        for (var b = 0; b < n; b++)
        {
            for (var ch = 0; ch < c; ch++)
            {
                for (var oy = 0; oy < oh; oy++)
                {
                    for (var ox = 0; ox < ow; ox++)
                    {
                        var o = (((b * c) + ch) * oh * ow) + (oy * ow) + ox;
                        var sum = bs?[ch] ?? 0;
                        db[ch] += gs[o];
                        for (var ky = 0; ky < kh; ky++)
                        {
                            for (var kx = 0; kx < kw; kx++)
                            {
                                int iy = (oy * stride) + ky - padH, ix = (ox * stride) + kx - padW;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                {
                                    continue;
                                }
                                var i = (((b * c) + ch) * h * w) + (iy * w) + ix;
                                var k = (ch * kh * kw) + (ky * kw) + kx;
                                sum += ws[k] * xs[i];
                                dx[i] += gs[o] * ws[k];
                                dw[k] += gs[o] * xs[i];
                            }
                        }
                        y[o] = sum;
                    }
                }
            }
        }
        Tensor F32(double[] values, ReadOnlySpan<long> shape) => tensor(values, [.. shape]).to_type(ScalarType.Float32);
        Tensor[] results = [F32(y, target.shape), F32(dx, x.shape), F32(dw, weight.shape)];
        return bias is null ? results : [.. results, F32(db, bias.shape)];
    }

    [Theory]
    [InlineData("convnext_atto")]
    [InlineData("mobilenetv2_050")]
    public void AModelsGradientsAreTheSameOnEitherPath(string name)
    {
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput(name));
        // Eval mode: no dropout (MobileNetV2's classifier), so both passes compute the same function.
        model.eval();
        var gen = new Generator(5);
        var x = randn([4, 1, 32, 32], generator: gen);
        var labels = randint(0, 10, [4], generator: gen);

        Dictionary<string, Tensor> Gradients()
        {
            model.zero_grad();
            nn.functional.cross_entropy(model.call(x), labels).backward();
            return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());
        }

        var fast = Gradients();
        Dictionary<string, Tensor> plain;
        using (CpuFastPaths.UsePlainLibtorch())
        {
            plain = Gradients();
        }
        Assert.Equal(fast.Keys.Order(), plain.Keys.Order());
        foreach (var (key, g) in fast)
        {
            var scale = Math.Max(1e-3, g.abs().max().item<float>());
            var diff = (plain[key] - g).abs().max().item<float>();
            Assert.True(diff <= 1e-4 * scale, $"{name} {key}: gradients differ by {diff} (scale {scale})");
        }
    }

    [Fact]
    public void AWeightOfTheWrongShapeIsAnErrorNamingBothShapes()
    {
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<ArgumentException>(() => DepthwiseConvolution.Conv2d(zeros(1, 4, 3, 3), zeros(3, 1, 3, 3), null, 1, [1, 1]));
        Assert.Contains("[3, 1, 3, 3]", ex.Message);
        Assert.Contains("[1, 4, 3, 3]", ex.Message);
    }
}
