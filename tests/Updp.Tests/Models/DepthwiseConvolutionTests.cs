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

    [Fact]
    public void AWeightOfTheWrongShapeIsAnErrorNamingBothShapes()
    {
        using var scope = NewDisposeScope();
        var ex = Assert.Throws<ArgumentException>(() => DepthwiseConvolution.Conv2d(zeros(1, 4, 3, 3), zeros(3, 1, 3, 3), null, 1, [1, 1]));
        Assert.Contains("[3, 1, 3, 3]", ex.Message);
        Assert.Contains("[1, 4, 3, 3]", ex.Message);
    }
}
