using static TorchSharp.torch;

namespace Updp.Tests;

public class ConvolutionKernelsTests
{
    [Fact]
    public void AfterTheCheckEveryProbeConvolutionMatchesDoublePrecision()
    {
        var choice = ConvolutionKernels.Check();

        Assert.True(ConvolutionKernels.ProbeError() <= ConvolutionKernels.Tolerance, $"kernels {choice}: probe error {ConvolutionKernels.ProbeError()}");
        Assert.Equal(choice, ConvolutionKernels.Check());
    }

    [Theory]
    [InlineData(24, 24, 8, 3)] // the MobileNetV2 merged block that failed on an AMD EPYC with oneDNN
    [InlineData(24, 24, 16, 3)]
    [InlineData(48, 24, 5, 3)]
    [InlineData(40, 40, 7, 1)]
    [InlineData(96, 160, 4, 3)]
    public void ConvolutionsOfShapesOutsideTheProbesAreRightToo(int cin, int cout, int side, int kernel)
    {
        ConvolutionKernels.Check();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator((ulong)(cin + (7 * side)));
        var x = randn([3, cin, side, side], generator: generator);
        var w = randn([cout, cin, kernel, kernel], generator: generator) * 0.2;
        var b = randn([cout], generator: generator);

        var y = nn.functional.conv2d(x, w, b, padding: [kernel / 2, kernel / 2]).to_type(ScalarType.Float64);

        // An independent computation: the convolution as a sum over taps of matrix products, in float64.
        var x64 = nn.functional.pad(x.to_type(ScalarType.Float64), [kernel / 2, kernel / 2, kernel / 2, kernel / 2]);
        var w64 = w.to_type(ScalarType.Float64);
        var expected = b.to_type(ScalarType.Float64).view(1, -1, 1, 1).expand(3, cout, side, side).clone();
        for (var i = 0; i < kernel; i++)
        {
            for (var j = 0; j < kernel; j++)
            {
                var window = x64[.., .., i..(i + side), j..(j + side)];
                expected += einsum("nchw,oc->nohw", window, w64[.., .., i, j]);
            }
        }
        var error = (y - expected).abs().max().item<double>();
        Assert.True(error <= 1e-4 * Math.Max(1, expected.abs().max().item<double>()), $"conv {cin}→{cout} {side}×{side} k{kernel}: max error {error}");
    }
}
