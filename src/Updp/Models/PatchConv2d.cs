using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Updp.Models;

/// <summary>
/// A convolution whose kernel equals its stride, without padding: a patchify stem, or a 2×2
/// stride-2 downsampling conv. Parameters and names are nn.Conv2d's (<c>weight</c>
/// [out, in, k, k], <c>bias</c> [out]) and so is the result, but it is computed as one matrix
/// product over the non-overlapping k×k patches: libtorch's CPU convolution takes a slow path for
/// these small strided kernels, its backward especially (2×2 stride 2 on 4×4 and 2×2 maps, forward
/// and backward: 2–4× slower than the matrix product). Rows and columns the patches do not cover are
/// ignored, as the convolution ignores them. The output is NCHW with channels-last strides, the
/// layout a <see cref="LayerNorm2d"/> next to it permutes to anyway.
/// </summary>
public sealed class PatchConv2d : nn.Module<Tensor, Tensor>, IMacCounter
{
#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly Parameter weight;
    private readonly Parameter bias;
#pragma warning restore IDE1006

    public PatchConv2d(long inChannels, long outChannels, int patch) : base(nameof(PatchConv2d))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(patch, 1);
        // nn.Conv2d's default initialisation (and its draws from the generator), so a model built
        // with this layer starts from the same weights as one built with the module it replaces.
        using var conv = nn.Conv2d(inChannels, outChannels, patch, stride: patch);
        weight = new Parameter(conv.weight.detach().clone().DetachFromDisposeScope());
        bias = new Parameter(conv.bias!.detach().clone().DetachFromDisposeScope());
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public Parameter Bias => bias;

    /// <summary>The kernel side, which is also the stride.</summary>
    public int Patch => (int)weight.shape[2];

    public override Tensor forward(Tensor x)
    {
        long n = x.shape[0], c = x.shape[1], k = Patch, outChannels = weight.shape[0];
        long ho = x.shape[2] / k, wo = x.shape[3] / k;
        if (c != weight.shape[1] || ho < 1 || wo < 1)
        {
            throw new ArgumentException(
                $"PatchConv2d: input [{string.Join(", ", x.shape)}] does not fit weight [{string.Join(", ", weight.shape)}] " +
                $"(expected {weight.shape[1]} channels and maps of at least {k}×{k})");
        }
        var nhwc = x.permute(0, 2, 3, 1);
        if (ho * k != x.shape[2] || wo * k != x.shape[3])
        {
            nhwc = nhwc.narrow(1, 0, ho * k).narrow(2, 0, wo * k);
        }
        // Each patch as one row ordered (kernel row, kernel column, channel), and the kernel to match.
        var patches = nhwc.reshape(n, ho, k, wo, k, c).permute(0, 1, 3, 2, 4, 5).reshape(n * ho * wo, k * k * c);
        var kernel = weight.permute(0, 2, 3, 1).reshape(outChannels, k * k * c);
        return nn.functional.linear(patches, kernel, bias).view(n, ho, wo, outChannels).permute(0, 3, 1, 2);
    }

    public long CountMacs(Tensor input, Tensor output) => output.numel() * weight.shape[1] * Patch * Patch;
}
