using TorchSharp;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Tests.Models;

public class PatchConv2dTests
{
    [Theory]
    [InlineData(1, 3, 32, 32, 4, false)] // ConvNeXt's stem on one-channel 32×32 images
    [InlineData(2, 3, 10, 9, 4, false)] // rows and columns the patches do not cover
    [InlineData(3, 8, 8, 8, 2, true)] // a downsampling conv after LayerNorm2d (channels-last input)
    [InlineData(4, 16, 2, 2, 2, true)]
    [InlineData(5, 5, 3, 5, 1, false)]
    public void MatchesLibtorchsConvolutionForwardAndBackward(int seed, int channels, int h, int w, int patch, bool channelsLast)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)seed);
        const int n = 3, outChannels = 6;
        using var layer = new PatchConv2d(channels, outChannels, patch);
        var x0 = channelsLast
            ? randn(new long[] { n, h, w, channels }, generator: generator).permute(0, 3, 1, 2)
            : randn(new long[] { n, channels, h, w }, generator: generator);
        var upstream = randn(new long[] { n, outChannels, h / patch, w / patch }, generator: generator);

        var x = x0.detach().requires_grad_(true);
        var y = layer.call(x);
        y.backward([upstream]);

        // The reference: libtorch's convolution on copies of the same tensors.
        var xr = x0.detach().requires_grad_(true);
        var wr = layer.Weight.detach().clone().requires_grad_(true);
        var br = layer.Bias.detach().clone().requires_grad_(true);
        var yr = nn.functional.conv2d(xr, wr, br, strides: [patch, patch]);
        yr.backward([upstream]);

        Assert.Equal(yr.shape, y.shape);
        AssertClose(yr, y, "output");
        AssertClose(xr.grad!, x.grad!, "input gradient");
        AssertClose(wr.grad!, layer.Weight.grad!, "weight gradient");
        AssertClose(br.grad!, layer.Bias.grad!, "bias gradient");
    }

    [Fact]
    public void CountsTheMacsOfTheConvolution()
    {
        using var scope = NewDisposeScope();
        using var layer = new PatchConv2d(40, 80, 2);
        var x = zeros(1, 40, 8, 8);
        var y = layer.call(x);
        Assert.Equal(80L * 4 * 4 * 40 * 2 * 2, layer.CountMacs(x, y));
    }

    [Fact]
    public void RejectsInputsItCannotCover()
    {
        using var layer = new PatchConv2d(3, 4, 4);
        var wrongChannels = Assert.Throws<ArgumentException>(() => layer.call(zeros(1, 2, 8, 8)));
        Assert.Contains("3 channels", wrongChannels.Message);
        var tooSmall = Assert.Throws<ArgumentException>(() => layer.call(zeros(1, 3, 3, 8)));
        Assert.Contains("4×4", tooSmall.Message);
    }

    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        var scale = Math.Max(1, expected.abs().max().item<float>());
        var diff = (expected - actual).abs().max().item<float>();
        Assert.True(diff <= 1e-5 * scale, $"{what}: max |Δ| {diff} (scale {scale})");
    }
}
