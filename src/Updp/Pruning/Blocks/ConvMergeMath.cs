using static TorchSharp.torch;
using Updp.Models;

namespace Updp.Pruning.Blocks;

/// <summary>
/// Merge algebra for chains of dense convolutions (residual blocks of two or three), as pure tensor
/// functions in the manner of <see cref="MergeMath"/> (whose <see cref="MergeMath.FoldBatchNorm"/>
/// folds a BN into a conv's [out, in, k, k] weight as it is). Weights are [out, in, kh, kw], groups = 1.
/// </summary>
internal static class ConvMergeMath
{
    /// <summary>
    /// One convolution computing conv₂(conv₁(x)) when neither pads (the padding has been moved to the
    /// input, <see cref="MovedPadding"/>): conv₁ (kernel k₁, stride s₁) then conv₂ (kernel k₂, stride
    /// s₂) is a kernel of k₁ + (k₂−1)·s₁ with stride s₁·s₂:
    /// W[o,i,u,v] = Σ_{m,a,c} W₂[o,m,a,c]·W₁[m,i,u−s₁a,v−s₁c], b = b₂ + Σ_{m,a,c} W₂[o,m,a,c]·b₁[m].
    /// </summary>
    public static (Tensor Weight, Tensor Bias) ComposeConv(Tensor w1, Tensor b1, int stride1, Tensor w2, Tensor b2)
    {
        if (w2.shape[1] != w1.shape[0])
        {
            throw new ArgumentException($"conv₂ takes {w2.shape[1]} channels but conv₁ gives {w1.shape[0]}", nameof(w2));
        }
        long outC = w2.shape[0], mid = w1.shape[0], inC = w1.shape[1];
        int k1h = (int)w1.shape[2], k1w = (int)w1.shape[3], k2h = (int)w2.shape[2], k2w = (int)w2.shape[3];
        var weight = zeros([outC, inC, k1h + ((k2h - 1) * stride1), k1w + ((k2w - 1) * stride1)], w1.dtype, w1.device);
        var w1Flat = w1.reshape(mid, -1);
        // Tap (a, c) of conv₂ sees conv₁'s window shifted by s₁·(a, c) input pixels.
        for (var a = 0; a < k2h; a++)
        {
            for (var c = 0; c < k2w; c++)
            {
                var tap = w2[.., .., a, c].matmul(w1Flat).view(outC, inC, k1h, k1w);
                weight[.., .., (stride1 * a)..((stride1 * a) + k1h), (stride1 * c)..((stride1 * c) + k1w)].PlusInPlace(tap);
            }
        }
        var bias = b2.Plus(w2.sum([2, 3]).matmul(b1));
        return (weight, bias);
    }

    /// <summary>
    /// <paramref name="weight"/> with <paramref name="shortcut"/> [out, in] added to its centre tap:
    /// a conv with odd kernel k, stride s and padding (k−1)/2 reads input pixel s·j at the centre tap
    /// of output j, the pixel an identity (eye) or a 1×1 stride-s projection reads, so y + shortcut(x)
    /// is one conv.
    /// </summary>
    public static Tensor AddToCentre(Tensor weight, Tensor shortcut)
    {
        int kh = (int)weight.shape[2], kw = (int)weight.shape[3];
        if (kh % 2 == 0 || kw % 2 == 0)
        {
            throw new ArgumentException($"the kernel needs a centre tap, got {kh}×{kw}", nameof(weight));
        }
        if (shortcut.shape[0] != weight.shape[0] || shortcut.shape[1] != weight.shape[1])
        {
            throw new ArgumentException($"shortcut [{string.Join(", ", shortcut.shape)}] does not match the conv's [out, in] = [{weight.shape[0]}, {weight.shape[1]}]", nameof(shortcut));
        }
        var result = weight.clone();
        result[.., .., kh / 2, kw / 2].PlusInPlace(shortcut);
        return result;
    }

    /// <summary>
    /// The zero padding of the input that replaces conv₁'s padding p₁ (stride s₁) and conv₂'s
    /// padding p₂, both then 0: p₁ + s₁·p₂. conv₂'s padding zeros sit between conv₁'s outputs, where a
    /// bias (or a folded BN) would otherwise not reach; padding the input instead gives the padded
    /// positions conv₁'s value there, so the two convs compose into one (<see cref="ComposeConv"/>).
    /// </summary>
    public static int MovedPadding(int padding1, int stride1, int padding2) => padding1 + (stride1 * padding2);
}
