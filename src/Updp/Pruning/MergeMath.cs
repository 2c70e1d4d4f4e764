using static TorchSharp.torch;

namespace Updp.Pruning;

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
        var scale = bnWeight / (runningVar + eps).sqrt();
        var shape = Enumerable.Repeat(1L, (int)weight.dim()).ToArray();
        shape[0] = -1;
        return (weight * scale.view(shape), ((bias - runningMean) * scale) + bnBias);
    }

    /// <summary>
    /// Folds an eval-mode batch norm that feeds a linear layer (weight [out, in], one input per BN
    /// channel) into it: W·(s⊙x + β − s⊙μ) + b = (W·diag(s))·x + (W·(β − s⊙μ) + b), s = γ/√(σ²+ε).
    /// </summary>
    public static (Tensor Weight, Tensor Bias) FoldInputBatchNorm(
        Tensor weight, Tensor bias, Tensor runningMean, Tensor runningVar, Tensor bnWeight, Tensor bnBias, double eps)
    {
        var scale = bnWeight / (runningVar + eps).sqrt();
        return (weight * scale.unsqueeze(0), weight.matmul(bnBias - (scale * runningMean)) + bias);
    }

    /// <summary>I + W for a square weight [C, C]: a residual connection x + Wx folded into the layer.</summary>
    public static Tensor AddIdentity(Tensor weight) =>
        weight.dim() == 2 && weight.shape[0] == weight.shape[1]
            ? weight + eye(weight.shape[0], dtype: weight.dtype, device: weight.device)
            : throw new ArgumentException($"a residual folds only into a square weight, not [{string.Join(", ", weight.shape)}]", nameof(weight));

    /// <summary>W₂(W₁x + b₁) + b₂ = (W₂W₁)x + (W₂b₁ + b₂), for weights in [out, in] layout.</summary>
    public static (Tensor Weight, Tensor Bias) ComposeLinear(Tensor w1, Tensor b1, Tensor w2, Tensor b2) =>
        (w2.matmul(w1), w2.matmul(b1) + b2);

    /// <summary>diag(s)·(Wx + b): row i of W and entry i of b scaled by s[i].</summary>
    public static (Tensor Weight, Tensor Bias) ScaleRows(Tensor scale, Tensor weight, Tensor bias) =>
        (weight * scale.unsqueeze(1), bias * scale);
}
