using static TorchSharp.torch;
using Updp.Models;

namespace Updp.Pruning.Blocks;

/// <summary>
/// The merge algebra as pure tensor functions (no modules, no state), each tested on its own
/// against a naive computation. Rules call them in float64 and cast the result once.
/// </summary>
internal static class MergeMath
{
    /// <summary>
    /// Folds an eval-mode batch norm into the layer before it, whose weight has one output channel per
    /// row (dim 0): s = γ/√(σ²+ε), W' = s·W, b' = s·(b−μ)+β.
    /// </summary>
    public static (Tensor Weight, Tensor Bias) FoldBatchNorm(
        Tensor weight, Tensor bias, Tensor runningMean, Tensor runningVar, Tensor bnWeight, Tensor bnBias, double eps)
    {
        var scale = bnWeight / runningVar.Plus(eps).sqrt();
        var shape = Enumerable.Repeat(1L, (int)weight.dim()).ToArray();
        shape[0] = -1;
        return (weight * scale.view(shape), ((bias - runningMean) * scale).Plus(bnBias));
    }

    /// <summary>
    /// Folds an eval-mode batch norm that feeds a linear layer (weight [out, in], one input per BN
    /// channel) into it: W·(s⊙x + β − s⊙μ) + b = (W·diag(s))·x + (W·(β − s⊙μ) + b), s = γ/√(σ²+ε).
    /// </summary>
    public static (Tensor Weight, Tensor Bias) FoldInputBatchNorm(
        Tensor weight, Tensor bias, Tensor runningMean, Tensor runningVar, Tensor bnWeight, Tensor bnBias, double eps)
    {
        var scale = bnWeight / runningVar.Plus(eps).sqrt();
        return (weight * scale.unsqueeze(0), weight.matmul(bnBias - (scale * runningMean)).Plus(bias));
    }

    /// <summary>I + W for a square weight [C, C]: a residual connection x + Wx folded into the layer.</summary>
    public static Tensor AddIdentity(Tensor weight) =>
        weight.dim() == 2 && weight.shape[0] == weight.shape[1]
            ? weight.Plus(eye(weight.shape[0], dtype: weight.dtype, device: weight.device))
            : throw new ArgumentException($"a residual folds only into a square weight, not [{string.Join(", ", weight.shape)}]", nameof(weight));

    /// <summary>W₂(W₁x + b₁) + b₂ = (W₂W₁)x + (W₂b₁ + b₂), for weights in [out, in] layout.</summary>
    public static (Tensor Weight, Tensor Bias) ComposeLinear(Tensor w1, Tensor b1, Tensor w2, Tensor b2) =>
        (w2.matmul(w1), w2.matmul(b1).Plus(b2));

    /// <summary>diag(s)·(Wx + b): row i of W and entry i of b scaled by s[i].</summary>
    public static (Tensor Weight, Tensor Bias) ScaleRows(Tensor scale, Tensor weight, Tensor bias) =>
        (weight * scale.unsqueeze(1), bias * scale);

    /// <summary>
    /// A 1×1 conv (weight [M, C] or [M, C, 1, 1], bias a) followed by a depthwise k×k conv (weight
    /// [M, 1, k, k], bias d) as one dense k×k conv C→M: W[m,c] = D[m]·A[m,c], b = d + a·ΣD[m].
    /// Exact when the zero padding is on the 1×1 conv's input (a padded pixel then carries a into the
    /// depthwise conv), not on the depthwise conv's.
    /// </summary>
    public static (Tensor Weight, Tensor Bias) ComposeDepthwiseAfterPointwise(Tensor pwWeight, Tensor pwBias, Tensor dwWeight, Tensor dwBias)
    {
        var a = pwWeight.flatten(1);
        var weight = dwWeight * a.view(a.shape[0], a.shape[1], 1, 1);
        return (weight, dwBias.Plus(pwBias * dwWeight.sum([1, 2, 3])));
    }

    /// <summary>A k×k conv (weight [M, C, k, k], bias b) followed by a 1×1 conv (weight [O, M] or [O, M, 1, 1], bias p) as one k×k conv C→O.</summary>
    public static (Tensor Weight, Tensor Bias) ComposePointwiseAfterConv(Tensor weight, Tensor bias, Tensor pwWeight, Tensor pwBias)
    {
        var p = pwWeight.flatten(1);
        var (w, b) = ComposeLinear(weight.flatten(1), bias, p, pwBias);
        return (w.view(p.shape[0], weight.shape[1], weight.shape[2], weight.shape[3]), b);
    }

    /// <summary>
    /// A k×k conv C→C (k odd, stride 1, same padding) plus its input, as one conv: the identity
    /// added to the centre tap, W'[o,o,k/2,k/2] = W[o,o,k/2,k/2] + 1.
    /// </summary>
    public static Tensor AddIdentityToCentreTap(Tensor weight)
    {
        long o = weight.shape[0], c = weight.shape[1], k = weight.shape[2];
        if (o != c || k != weight.shape[3] || k % 2 == 0)
        {
            throw new ArgumentException($"a residual folds only into a square odd kernel C→C, not [{string.Join(", ", weight.shape)}]", nameof(weight));
        }
        var result = weight.clone();
        result.select(2, k / 2).select(2, k / 2).PlusInPlace(eye(c, dtype: weight.dtype, device: weight.device));
        return result;
    }
}
