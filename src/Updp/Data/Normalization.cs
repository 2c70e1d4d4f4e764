namespace Updp.Data;

/// <summary>
/// Per-channel normalisation applied after scaling pixels to [0, 1]: <c>(x / 255 - Mean) / Std</c>.
/// </summary>
/// <param name="Mean">Mean of the scaled pixels.</param>
/// <param name="Std">Standard deviation of the scaled pixels; must be positive.</param>
public sealed record Normalization(float Mean, float Std)
{
    /// <summary>Fashion-MNIST training-set statistics.</summary>
    public static Normalization FashionMnist { get; } = new(0.2860f, 0.3530f);

    /// <summary>MNIST training-set statistics.</summary>
    public static Normalization Mnist { get; } = new(0.1307f, 0.3081f);

    /// <summary>No-op normalisation: pixels only scaled to [0, 1].</summary>
    public static Normalization Identity { get; } = new(0f, 1f);

    /// <summary>Mean and (population) standard deviation over every pixel of <paramref name="images"/>.</summary>
    public static Normalization ComputeFrom(LabeledImages images)
    {
        ArgumentNullException.ThrowIfNull(images);

        // A histogram keeps the sums exact however many pixels there are.
        var histogram = new long[256];
        foreach (var pixel in images.Pixels)
        {
            histogram[pixel]++;
        }

        double count = images.Pixels.Length;
        if (count == 0)
        {
            return Identity;
        }

        double sum = 0, sumSquares = 0;
        for (var value = 0; value < 256; value++)
        {
            var scaled = value / 255.0;
            sum += histogram[value] * scaled;
            sumSquares += histogram[value] * scaled * scaled;
        }

        var mean = sum / count;
        var std = Math.Sqrt(Math.Max(0, (sumSquares / count) - (mean * mean)));

        // A constant image set has no spread; dividing by 1 keeps it finite.
        return new Normalization((float)mean, std > 1e-6 ? (float)std : 1f);
    }
}
