using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Updp.Models;

/// <summary>A module that knows its own multiply-accumulates, for layers computed functionally.</summary>
public interface IMacCounter
{
    /// <summary>MACs of one call that produced <paramref name="output"/> from <paramref name="input"/>.</summary>
    long CountMacs(Tensor input, Tensor output);
}

/// <summary>
/// A "same"-padded, stride-1 depthwise convolution (parameters <c>weight</c> [C,1,k,k] and <c>bias</c>
/// [C], as nn.Conv2d with groups=C), computed with <see cref="DepthwiseConvolution"/> (libtorch's
/// forward, our weight gradient on small maps). On maps smaller than the kernel only the central
/// taps reach an output, so the convolution uses the cropped kernel; on a 1×1 map that is the centre
/// tap alone, a per-channel scale.
/// </summary>
public sealed class DepthwiseConv2d : nn.Module<Tensor, Tensor>, IMacCounter
{
    private readonly int _radius;

#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly Parameter weight;
    private readonly Parameter bias;
#pragma warning restore IDE1006

    public DepthwiseConv2d(long channels, int kernelSize) : base(nameof(DepthwiseConv2d))
    {
        if (kernelSize % 2 == 0)
        {
            throw new ArgumentException($"kernel size must be odd, got {kernelSize}", nameof(kernelSize));
        }
        _radius = kernelSize / 2;
        // nn.Conv2d's default initialisation, so the layer behaves like the module it replaces.
        using var conv = nn.Conv2d(channels, channels, kernelSize, padding: _radius, groups: channels);
        weight = new Parameter(conv.weight.detach().clone().DetachFromDisposeScope());
        bias = new Parameter(conv.bias!.detach().clone().DetachFromDisposeScope());
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public Parameter Bias => bias;

    public int KernelSize => 2 * _radius + 1;

    public override Tensor forward(Tensor x)
    {
        var (rh, rw) = EffectiveRadius(x);
        if (rh == 0 && rw == 0)
        {
            var centre = weight[.., 0, _radius, _radius];
            return (x * centre.view(1, -1, 1, 1)).Plus(bias.view(1, -1, 1, 1));
        }
        return DepthwiseConvolution.Conv2d(x, CropKernel(rh, rw), bias, 1, [rh, rw]);
    }

    /// <summary>libtorch's convolution and its autograd (cropped kernel where the map is smaller than it): the reference.</summary>
    internal Tensor ConvolutionForward(Tensor x)
    {
        var (rh, rw) = EffectiveRadius(x);
        return nn.functional.conv2d(x, CropKernel(rh, rw), bias, padding: [rh, rw], groups: weight.shape[0]);
    }

    public long CountMacs(Tensor input, Tensor output)
    {
        var (rh, rw) = EffectiveRadius(input);
        return output.numel() * (2 * rh + 1) * (2 * rw + 1);
    }

    /// <summary>The kernel's central (2·rh+1)×(2·rw+1) taps.</summary>
    private Tensor CropKernel(int rh, int rw) =>
        rh == _radius && rw == _radius ? weight : weight[.., .., (_radius - rh)..(_radius + rh + 1), (_radius - rw)..(_radius + rw + 1)];

    private (int H, int W) EffectiveRadius(Tensor x) =>
        ((int)Math.Min(_radius, x.shape[2] - 1), (int)Math.Min(_radius, x.shape[3] - 1));
}
