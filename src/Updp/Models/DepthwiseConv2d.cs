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
/// [C], as nn.Conv2d with groups=C). The forward pass is libtorch's depthwise convolution, which is
/// fast on the channels-last maps ConvNeXt produces; what is slow on the small maps of small inputs
/// is libtorch's weight gradient (about 2 ms per call for any map of at most 8×8 at batch 64, against
/// 0.3 ms for the forward pass), so on those maps the backward pass is our own
/// (<see cref="SmallMapDepthwiseConv"/>).
/// <list type="bullet">
/// <item>On maps smaller than the kernel only the central taps reach an output, so the convolution
/// uses the cropped kernel; on a 1×1 map that is the centre tap alone, a per-channel scale.</item>
/// </list>
/// </summary>
public sealed class DepthwiseConv2d : nn.Module<Tensor, Tensor>, IMacCounter
{
    /// <summary>
    /// Largest H·W whose weight gradient is computed as per-channel matrix products; the product is
    /// (H·W)² per channel, so beyond 8×8 libtorch's own gradient is cheaper again (16×16, C = 40,
    /// batch 64, forward and backward: 9.8 ms with libtorch's gradient against 13.1 ms).
    /// </summary>
    public const int MatrixGradientMaxPositions = 64;

    private readonly int _radius;
    private readonly Dictionary<(long H, long W), Tensor> _tapIndex = [];

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
            return (x * centre.view(1, -1, 1, 1)) + bias.view(1, -1, 1, 1);
        }
        var needsGradient = is_grad_enabled() && (x.requires_grad || weight.requires_grad || bias.requires_grad);
        return needsGradient && x.shape[2] * x.shape[3] <= MatrixGradientMaxPositions
            ? SmallMapDepthwiseConv.Apply(x, weight, bias, TapIndex(x.shape[2], x.shape[3]))
            : ConvolutionForward(x);
    }

    /// <summary>libtorch's convolution (cropped kernel where the map is smaller than it), forward and backward.</summary>
    internal Tensor ConvolutionForward(Tensor x)
    {
        var (rh, rw) = EffectiveRadius(x);
        return nn.functional.conv2d(x, CropKernel(weight, rh, rw), bias, padding: [rh, rw], groups: weight.shape[0]);
    }

    public long CountMacs(Tensor input, Tensor output)
    {
        var (rh, rw) = EffectiveRadius(input);
        return output.numel() * (2 * rh + 1) * (2 * rw + 1);
    }

    /// <summary>
    /// For output position (py,px) and input position (qy,qx) of an H×W map, the kernel tap linking
    /// them (row-major), or k·k where no tap does; laid out [output position, input position].
    /// </summary>
    internal Tensor TapIndex(long h, long w)
    {
        if (_tapIndex.TryGetValue((h, w), out var cached))
        {
            return cached;
        }
        var k = KernelSize;
        var index = new long[h * w * h * w];
        for (var py = 0; py < h; py++)
        {
            for (var px = 0; px < w; px++)
            {
                for (var qy = 0; qy < h; qy++)
                {
                    for (var qx = 0; qx < w; qx++)
                    {
                        int dy = qy - py, dx = qx - px;
                        index[(((py * w) + px) * h * w) + (qy * w) + qx] = Math.Abs(dy) <= _radius && Math.Abs(dx) <= _radius
                            ? ((_radius + dy) * k) + _radius + dx
                            : k * k;
                    }
                }
            }
        }
        var t = tensor(index, device: weight.device).DetachFromDisposeScope();
        _tapIndex[(h, w)] = t;
        return t;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var t in _tapIndex.Values)
            {
                t.Dispose();
            }
            _tapIndex.Clear();
        }
        base.Dispose(disposing);
    }

    /// <summary>The kernel's central (2·rh+1)×(2·rw+1) taps.</summary>
    internal static Tensor CropKernel(Tensor weight, int rh, int rw)
    {
        var r = (int)weight.shape[2] / 2;
        return rh == r && rw == r ? weight : weight[.., .., (r - rh)..(r + rh + 1), (r - rw)..(r + rw + 1)];
    }

    internal static (int H, int W) EffectiveRadius(Tensor x, int radius) =>
        ((int)Math.Min(radius, x.shape[2] - 1), (int)Math.Min(radius, x.shape[3] - 1));

    private (int H, int W) EffectiveRadius(Tensor x) => EffectiveRadius(x, _radius);
}

/// <summary>
/// The depthwise convolution of <see cref="DepthwiseConv2d"/> on a small map, with its own backward
/// pass. Forward, and the input gradient (the convolution of the output gradient with the flipped
/// kernel), are libtorch's depthwise convolution. The weight gradient is where libtorch is slow: here
/// each channel's gradient with respect to its P×P position-to-position matrix is one matrix product
/// of the output gradient [P, N] with the input [N, P], all channels in one batched product of
/// contiguous operands, and the P² entries are summed into the kernel taps that produced them.
/// Not twice differentiable.
/// </summary>
internal sealed class SmallMapDepthwiseConv : autograd.SingleTensorFunction<SmallMapDepthwiseConv>
{
    public override string Name => nameof(SmallMapDepthwiseConv);

    /// <param name="tapIndex">The map size's <see cref="DepthwiseConv2d.TapIndex"/>.</param>
    public static Tensor Apply(Tensor x, Tensor weight, Tensor bias, Tensor tapIndex) => apply(x, weight, bias, tapIndex);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        Tensor x = (Tensor)vars[0], weight = (Tensor)vars[1], bias = (Tensor)vars[2], tapIndex = (Tensor)vars[3];
        ctx.save_for_backward([x, weight, tapIndex]);
        var (rh, rw) = DepthwiseConv2d.EffectiveRadius(x, (int)weight.shape[2] / 2);
        return nn.functional.conv2d(x, DepthwiseConv2d.CropKernel(weight, rh, rw), bias, padding: [rh, rw], groups: weight.shape[0]);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
    {
        var saved = ctx.get_saved_variables();
        Tensor x = saved[0], weight = saved[1], tapIndex = saved[2];
        long n = x.shape[0], c = x.shape[1], p = x.shape[2] * x.shape[3], taps = weight.shape[2] * weight.shape[3];
        var (rh, rw) = DepthwiseConv2d.EffectiveRadius(x, (int)weight.shape[2] / 2);
        var kernel = DepthwiseConv2d.CropKernel(weight, rh, rw);
        var gradInput = nn.functional.conv2d(grad, kernel.flip(2, 3), padding: [rh, rw], groups: c);
        // bmm on strided operands takes a slow path (3–15× here); the two copies cost far less.
        var gradByChannel = grad.reshape(n, c, p).permute(1, 2, 0).contiguous();
        var inputByChannel = x.reshape(n, c, p).permute(1, 0, 2).contiguous();
        var gradMatrix = bmm(gradByChannel, inputByChannel).view(c, p * p);
        var gradWeight = zeros(c, taps + 1, gradMatrix.dtype, gradMatrix.device)
            .index_add_(1, tapIndex, gradMatrix, 1.0)
            .narrow(1, 0, taps)
            .view(weight.shape);
        var gradBias = grad.sum([0, 2, 3]);
        return [gradInput, gradWeight, gradBias, null!];
    }
}
