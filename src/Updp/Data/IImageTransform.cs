namespace Updp.Data;

/// <summary>
/// Turns one decoded image into the normalised float32 C×T×T input of a model (CHW, the layout a
/// batch tensor [B, C, T, T] holds). Implementations are immutable and safe to share between threads.
/// </summary>
public interface IImageTransform
{
    /// <summary>Channels C of the output (and of the images it accepts).</summary>
    int Channels { get; }

    /// <summary>Side T of the square output.</summary>
    int TargetSize { get; }

    /// <summary>Floats written per image: C × T × T.</summary>
    int OutputLength { get; }

    /// <summary>Whether <see cref="Apply"/> draws from its random generator at all.</summary>
    bool IsRandom { get; }

    /// <summary>
    /// Transforms <paramref name="image"/> into <paramref name="destination"/>
    /// (<see cref="OutputLength"/> floats). Random choices come from <paramref name="random"/>, so a
    /// seeded generator reproduces them.
    /// </summary>
    void Apply(PixelImage image, Random random, Span<float> destination);
}
