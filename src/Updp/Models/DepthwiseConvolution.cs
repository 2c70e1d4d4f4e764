using System.Collections.Concurrent;
using TorchSharp;
using static TorchSharp.torch;

namespace Updp.Models;

/// <summary>
/// Depthwise convolution (groups = channels) with a faster weight gradient on small maps. libtorch's
/// CPU forward and input gradient are fast at every size we use, but its depthwise weight gradient
/// is slow on small maps: 1.8–2.3 ms per call for a 7×7 kernel on maps of at most 8×8 at batch 64
/// (forward 0.14–0.33 ms), and 12 ms (C = 384, 2×2) to 26 ms (C = 960, 1×1) for a 3×3 kernel.
/// </summary>
public static class DepthwiseConvolution
{
    /// <summary>
    /// Largest input H·W whose weight gradient is computed as per-channel matrix products; the
    /// product has (H·W)·(H'·W') entries per channel, so beyond 8×8 libtorch's own gradient is
    /// cheaper again (7×7 on 16×16, C = 40, batch 64, forward and backward: 9.8 ms against 13.1 ms).
    /// </summary>
    public const int MatrixGradientMaxPositions = 64;

    private static readonly ConcurrentDictionary<TapGeometry, Tensor> TapIndices = new();

    /// <summary>
    /// <c>conv2d(x, weight, bias, stride, padding, groups: C)</c> for weight [C, 1, kh, kw]: libtorch's
    /// when no gradient is needed, the map is larger than <see cref="MatrixGradientMaxPositions"/> or
    /// the tensors are not on the CPU (the timings above are libtorch's CPU kernels; on other devices
    /// its own gradient is used), else <see cref="SmallMapDepthwiseConv"/> (same forward, own backward).
    /// </summary>
    public static Tensor Conv2d(Tensor x, Tensor weight, Tensor? bias, long stride, long[] padding)
    {
        if (weight.shape[1] != 1 || x.shape[1] != weight.shape[0])
        {
            throw new ArgumentException(
                $"depthwise convolution: weight [{string.Join(", ", weight.shape)}] does not fit input [{string.Join(", ", x.shape)}] (expected [C, 1, kh, kw] with C = input channels)");
        }
        if (!UsesSmallMapGradient(x, weight, bias))
        {
            return Libtorch(x, weight, bias, stride, padding);
        }
        var geometry = new TapGeometry(x.shape[2], x.shape[3], weight.shape[2], weight.shape[3], stride, padding[0], padding[1]);
        var taps = TapIndex(geometry, weight.device);
        return bias is null
            ? SmallMapDepthwiseConv.Apply(x, weight, geometry, taps)
            : SmallMapDepthwiseConv.Apply(x, weight, bias, geometry, taps);
    }

    /// <summary>Whether <see cref="Conv2d"/> takes <see cref="SmallMapDepthwiseConv"/> for these operands (else libtorch's convolution).</summary>
    internal static bool UsesSmallMapGradient(Tensor x, Tensor weight, Tensor? bias)
    {
        var needsGradient = is_grad_enabled() && (x.requires_grad || weight.requires_grad || (bias?.requires_grad ?? false));
        return needsGradient && x.shape[2] * x.shape[3] <= MatrixGradientMaxPositions && CpuFastPaths.Apply(x);
    }

    /// <summary>The plain libtorch depthwise convolution and its autograd, on any device.</summary>
    internal static Tensor Libtorch(Tensor x, Tensor weight, Tensor? bias, long stride, long[] padding) =>
        nn.functional.conv2d(x, weight, bias, strides: [stride, stride], padding: padding, groups: weight.shape[0]);

    /// <summary>
    /// For each output position (oy,ox) and input position (iy,ix), the kernel tap linking them
    /// (row-major ky·kw + kx), or kh·kw where none does; laid out [output position, input position].
    /// </summary>
    internal static Tensor TapIndex(TapGeometry g, Device device)
    {
        var cpu = TapIndices.GetOrAdd(g, static g =>
        {
            var index = new long[g.OutH * g.OutW * g.H * g.W];
            var i = 0;
            for (var oy = 0L; oy < g.OutH; oy++)
            {
                for (var ox = 0L; ox < g.OutW; ox++)
                {
                    for (var iy = 0L; iy < g.H; iy++)
                    {
                        for (var ix = 0L; ix < g.W; ix++)
                        {
                            long ky = iy - (oy * g.Stride) + g.PadH, kx = ix - (ox * g.Stride) + g.PadW;
                            index[i++] = ky >= 0 && ky < g.Kh && kx >= 0 && kx < g.Kw ? (ky * g.Kw) + kx : g.Kh * g.Kw;
                        }
                    }
                }
            }
            return tensor(index).DetachFromDisposeScope();
        });
        return device.type == DeviceType.CPU ? cpu : cpu.to(device);
    }
}

/// <summary>The shape of one depthwise convolution: input map, kernel, stride, padding.</summary>
internal readonly record struct TapGeometry(long H, long W, long Kh, long Kw, long Stride, long PadH, long PadW)
{
    public long OutH => ((H + (2 * PadH) - Kh) / Stride) + 1;

    public long OutW => ((W + (2 * PadW) - Kw) / Stride) + 1;
}

/// <summary>
/// A depthwise convolution on a small map with its own backward pass. The forward pass and the input
/// gradient (the transposed convolution) are libtorch's. The weight gradient is where libtorch is
/// slow: here each channel's gradient with respect to its [output position, input position] matrix
/// is one matrix product of the output gradient [P', N] with the input [N, P], all channels in one
/// batched product of contiguous operands (bmm on the strided views takes a slow path, 3–15× here),
/// and the entries are summed into the kernel taps that produced them. Not twice differentiable.
/// </summary>
internal sealed class SmallMapDepthwiseConv : autograd.SingleTensorFunction<SmallMapDepthwiseConv>
{
    public override string Name => nameof(SmallMapDepthwiseConv);

    public static Tensor Apply(Tensor x, Tensor weight, TapGeometry geometry, Tensor tapIndex) => apply(x, weight, geometry, tapIndex);

    public static Tensor Apply(Tensor x, Tensor weight, Tensor bias, TapGeometry geometry, Tensor tapIndex) => apply(x, weight, bias, geometry, tapIndex);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        Tensor x = (Tensor)vars[0], weight = (Tensor)vars[1];
        var bias = vars.Length == 5 ? (Tensor)vars[2] : null;
        var geometry = (TapGeometry)vars[^2];
        ctx.save_for_backward([x, weight, (Tensor)vars[^1]]);
        ctx.save_data("geometry", geometry);
        ctx.save_data("bias", bias is not null);
        return nn.functional.conv2d(x, weight, bias, strides: [geometry.Stride, geometry.Stride],
            padding: [geometry.PadH, geometry.PadW], groups: weight.shape[0]);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
    {
        var saved = ctx.get_saved_variables();
        Tensor x = saved[0], weight = saved[1], tapIndex = saved[2];
        var g = (TapGeometry)ctx.get_data("geometry");
        long n = x.shape[0], c = x.shape[1], taps = g.Kh * g.Kw;
        long outputPadH = g.H - (((g.OutH - 1) * g.Stride) - (2 * g.PadH) + g.Kh);
        long outputPadW = g.W - (((g.OutW - 1) * g.Stride) - (2 * g.PadW) + g.Kw);
        var gradInput = nn.functional.conv_transpose2d(grad, weight, strides: [g.Stride, g.Stride],
            padding: [g.PadH, g.PadW], output_padding: [outputPadH, outputPadW], groups: c);
        var gradByChannel = grad.reshape(n, c, g.OutH * g.OutW).permute(1, 2, 0).contiguous();
        var inputByChannel = x.reshape(n, c, g.H * g.W).permute(1, 0, 2).contiguous();
        var gradMatrix = bmm(gradByChannel, inputByChannel).view(c, -1);
        var gradWeight = zeros(c, taps + 1, gradMatrix.dtype, gradMatrix.device)
            .IndexAddInPlace(1, tapIndex, gradMatrix)
            .narrow(1, 0, taps)
            .view(weight.shape);
        List<Tensor> grads = [gradInput, gradWeight];
        if ((bool)ctx.get_data("bias"))
        {
            grads.Add(grad.sum([0, 2, 3]));
        }
        grads.Add(null!);
        grads.Add(null!);
        return grads;
    }
}
