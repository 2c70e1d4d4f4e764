namespace Updp.Data;

/// <summary>
/// Per-channel normalisation after scaling pixels to [0, 1]: channel c becomes
/// <c>(x / 255 − Mean[c]) / Std[c]</c>, as torchvision's <c>ToTensor</c> then <c>Normalize</c>
/// compute it in float32.
/// </summary>
public sealed class ChannelNormalization : IEquatable<ChannelNormalization>
{
    /// <summary>ImageNet's statistics, timm's and torchvision's default for RGB models.</summary>
    public static ChannelNormalization ImageNet { get; } = new([0.485f, 0.456f, 0.406f], [0.229f, 0.224f, 0.225f]);

    /// <summary>Creates a normalisation; every mean must be finite and every std positive and finite.</summary>
    public ChannelNormalization(IReadOnlyList<float> mean, IReadOnlyList<float> std)
    {
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(std);
        if (mean.Count == 0 || mean.Count != std.Count)
        {
            throw new ArgumentException($"mean and std need one value per channel and the same count, got {mean.Count} and {std.Count}");
        }

        if (mean.Any(m => !float.IsFinite(m)) || std.Any(s => !(s > 0) || !float.IsFinite(s)))
        {
            throw new ArgumentException($"normalisation needs finite means and positive finite stds, got mean [{string.Join(", ", mean)}], std [{string.Join(", ", std)}]");
        }

        Mean = [.. mean];
        Std = [.. std];
    }

    /// <summary>Means, one per channel.</summary>
    public IReadOnlyList<float> Mean { get; }

    /// <summary>Standard deviations, one per channel.</summary>
    public IReadOnlyList<float> Std { get; }

    /// <summary>Number of channels.</summary>
    public int Channels => Mean.Count;

    /// <summary>A one-channel normalisation.</summary>
    public static ChannelNormalization From(Normalization normalization)
    {
        ArgumentNullException.ThrowIfNull(normalization);
        return new([normalization.Mean], [normalization.Std]);
    }

    /// <summary>
    /// This normalisation for <paramref name="channels"/> channels: itself when the counts agree;
    /// a single value repeated; three RGB values averaged for one channel (a grayscale model fed
    /// statistics given for colour images).
    /// </summary>
    public ChannelNormalization ForChannels(int channels)
    {
        if (channels == Channels)
        {
            return this;
        }

        if (Channels == 1)
        {
            return new(Enumerable.Repeat(Mean[0], channels).ToArray(), Enumerable.Repeat(Std[0], channels).ToArray());
        }

        if (channels == 1)
        {
            return new([Mean.Average()], [Std.Average()]);
        }

        throw new ArgumentException($"a normalisation for {Channels} channels cannot serve {channels}");
    }

    /// <summary>One 256-entry table per channel mapping a pixel value to its normalised float.</summary>
    public float[][] LookupTables()
    {
        var tables = new float[Channels][];
        for (var c = 0; c < Channels; c++)
        {
            tables[c] = new float[256];
            for (var value = 0; value < 256; value++)
            {
                tables[c][value] = ((value / 255f) - Mean[c]) / Std[c];
            }
        }

        return tables;
    }

    /// <inheritdoc/>
    public bool Equals(ChannelNormalization? other) =>
        other is not null && Mean.SequenceEqual(other.Mean) && Std.SequenceEqual(other.Std);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as ChannelNormalization);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Channels, Mean[0], Std[0]);

    /// <inheritdoc/>
    public override string ToString() => $"mean [{string.Join(", ", Mean)}], std [{string.Join(", ", Std)}]";
}
