using TorchSharp;
using static TorchSharp.torch;

namespace Updp.Models;

/// <summary>
/// Tensor arithmetic whose scalar operands stay alive for the whole native call
/// (docs/RELIABILITY.md#scalars-freed-during-a-call). TorchSharp 0.107's <c>a + b</c> is
/// <c>a.add(b, 1)</c> with a temporary <see cref="Scalar"/> alpha, and <c>a * 0.5</c>, <c>a / 2.0</c>
/// and <c>a + 1e-5</c> convert their number to a temporary <see cref="Scalar"/> too; nothing
/// references it once its handle is read. A garbage collection started by another thread during
/// the call (the loader's worker threads allocate all the time) lets the finalizer thread free the
/// native scalar while libtorch still reads it: "Expected false to be true" or a
/// <c>Scalar.toFloat</c> error from deep inside a forward pass, once in some thousands of steps.
/// These helpers compute exactly what the operators compute (the same libtorch calls with the same
/// scalar values), holding the scalars in static fields or in a <c>using</c> that outlives the call.
/// </summary>
internal static class TensorArithmetic
{
    // Static, so reachable for the life of the process and never finalised.
    private static readonly Scalar One = 1.ToScalar();

    /// <summary><paramref name="a"/> + <paramref name="b"/>, as the operator computes it (alpha 1).</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary><c>a.add_(b)</c> (alpha 1), in place.</summary>
    public static Tensor PlusInPlace(this Tensor a, Tensor b) => a.add_(b, One);

    /// <summary><c>a.fill_(value)</c>, in place.</summary>
    public static Tensor FillInPlace(this Tensor a, int value)
    {
        using var scalar = value.ToScalar();
        return a.fill_(scalar);
    }

    /// <summary><paramref name="a"/> + <paramref name="b"/> elementwise, as the operator computes it.</summary>
    public static Tensor Plus(this Tensor a, double b)
    {
        using var scalar = b.ToScalar();
        return a.add(scalar, One);
    }

    /// <summary><paramref name="a"/> · <paramref name="factor"/>, as the operator computes it.</summary>
    public static Tensor Times(this Tensor a, double factor)
    {
        using var scalar = factor.ToScalar();
        return a.mul(scalar);
    }

    /// <summary><paramref name="a"/> / <paramref name="divisor"/>, as the operator computes it.</summary>
    public static Tensor DividedBy(this Tensor a, double divisor)
    {
        using var scalar = divisor.ToScalar();
        return a.div(scalar);
    }

    /// <summary><c>index_add_</c> with alpha 1.0, as <c>index_add_(dim, index, source, 1.0)</c> computes it.</summary>
    public static Tensor IndexAddInPlace(this Tensor a, long dim, Tensor index, Tensor source)
    {
        using var alpha = 1.0.ToScalar();
        return a.index_add_(dim, index, source, alpha);
    }
}
