using static TorchSharp.torch;
using Updp.Models;

namespace Updp.Pruning.Blocks;

/// <summary>The progressive operators of docs/METHOD.md#progressive-operators, shared by every block rule.</summary>
internal static class Progressive
{
    /// <summary>act_λ(x) = (1−λ)·σ(x) + λ·x.</summary>
    public static Tensor Activation(Tensor x, Func<Tensor, Tensor> activation, double lambda) =>
        Mix(() => activation(x), () => x, lambda);

    /// <summary>norm_λ(x) = (1−λ)·LN(x) + λ·BN(x).</summary>
    public static Tensor Norm(Tensor x, Func<Tensor, Tensor> layerNorm, Func<Tensor, Tensor> batchNorm, double lambda) =>
        Mix(() => layerNorm(x), () => batchNorm(x), lambda);

    /// <summary>Throws unless λ ∈ [0,1].</summary>
    public static double CheckLambda(double lambda) =>
        lambda is >= 0 and <= 1 ? lambda : throw new ArgumentOutOfRangeException(nameof(lambda), lambda, "λ must lie in [0, 1]");

    // The endpoints skip the other branch: λ=0 then reproduces the original block bit for bit (and
    // leaves the batch norm's running statistics alone), λ=1 the pruned one.
    private static Tensor Mix(Func<Tensor> original, Func<Tensor> pruned, double lambda) => lambda switch
    {
        0 => original(),
        1 => pruned(),
        _ => original().Times(1 - lambda).Plus(pruned().Times(lambda)),
    };
}
