namespace Updp.Data;

/// <summary>
/// The MNIST-style transform: turns one uint8 H×W image (of any channel count C) into normalised float32 C×T×T planes (T = <see cref="TargetSize"/>):
/// zero-pad (or centre-crop) to T×T, then for training a random crop of the T×T image padded by
/// <see cref="CropPadding"/> zero pixels on each side (torchvision's <c>RandomCrop(T, padding)</c>) and a
/// horizontal flip with probability 0.5, then <c>(x / 255 - mean) / std</c>. Padding is zero in
/// pixel space, so it ends up as <c>-mean / std</c> after normalisation, as it does in torchvision.
/// </summary>
public sealed class ImageTransform : IImageTransform
{
    /// <summary>Side length CIFAR-style architectures expect.</summary>
    public const int DefaultTargetSize = 32;

    /// <summary>Random-crop padding: 2 rather than CIFAR's 4: on Fashion-MNIST it trained faster in short runs (docs/BENCHMARKS.md).</summary>
    public const int DefaultCropPadding = 2;

    // One 256-entry table per channel: pixels take 256 values, so normalising is a look-up.
    private readonly float[][] _lookup;

    private ImageTransform(ChannelNormalization normalization, int targetSize, int cropPadding, bool horizontalFlip)
    {
        ArgumentNullException.ThrowIfNull(normalization);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(targetSize);
        ArgumentOutOfRangeException.ThrowIfNegative(cropPadding);
        Normalization = normalization;
        TargetSize = targetSize;
        CropPadding = cropPadding;
        HorizontalFlip = horizontalFlip;
        _lookup = normalization.LookupTables();
    }

    /// <summary>Normalisation applied last, one mean and std per channel.</summary>
    public ChannelNormalization Normalization { get; }

    /// <inheritdoc/>
    public int Channels => Normalization.Channels;

    /// <summary>Side of the square output.</summary>
    public int TargetSize { get; }

    /// <summary>Zero padding added on each side before the random crop; 0 disables cropping.</summary>
    public int CropPadding { get; }

    /// <summary>Whether images are mirrored left-right with probability 0.5.</summary>
    public bool HorizontalFlip { get; }

    /// <summary>Whether <see cref="Apply"/> draws from its random generator at all.</summary>
    public bool IsRandom => CropPadding > 0 || HorizontalFlip;

    /// <summary>Floats written per image: C × T × T.</summary>
    public int OutputLength => Channels * TargetSize * TargetSize;

    /// <summary>Training augmentation of one-channel images: pad to <paramref name="targetSize"/>, random crop, random flip, normalise.</summary>
    public static ImageTransform ForTraining(
        Normalization normalization, int targetSize = DefaultTargetSize, int cropPadding = DefaultCropPadding, bool horizontalFlip = true) =>
        new(ChannelNormalization.From(normalization), targetSize, cropPadding, horizontalFlip);

    /// <summary>Training augmentation with one mean and std per channel.</summary>
    public static ImageTransform ForTraining(
        ChannelNormalization normalization, int targetSize, int cropPadding, bool horizontalFlip) =>
        new(normalization, targetSize, cropPadding, horizontalFlip);

    /// <summary>Evaluation of one-channel images: pad to <paramref name="targetSize"/> and normalise; no randomness.</summary>
    public static ImageTransform ForEvaluation(Normalization normalization, int targetSize = DefaultTargetSize) =>
        new(ChannelNormalization.From(normalization), targetSize, cropPadding: 0, horizontalFlip: false);

    /// <summary>Evaluation with one mean and std per channel.</summary>
    public static ImageTransform ForEvaluation(ChannelNormalization normalization, int targetSize) =>
        new(normalization, targetSize, cropPadding: 0, horizontalFlip: false);

    /// <inheritdoc/>
    public void Apply(PixelImage image, Random random, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(random);
        Apply(image.Pixels.Span, image.Height, image.Width, image.Channels, Sample(random), destination);
    }

    /// <summary>
    /// Transforms one image into <paramref name="destination"/> (<see cref="OutputLength"/> floats,
    /// row-major). Random choices come from <paramref name="random"/>, so a seeded generator
    /// reproduces them.
    /// </summary>
    public void Apply(ReadOnlySpan<byte> image, int height, int width, Random random, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(random);
        Apply(image, height, width, 1, Sample(random), destination);
    }

    internal Augmentation Sample(Random random)
    {
        if (!IsRandom)
        {
            return Augmentation.Centered(CropPadding);
        }

        var top = random.Next((2 * CropPadding) + 1);
        var left = random.Next((2 * CropPadding) + 1);
        var flip = HorizontalFlip && random.Next(2) == 1;
        return new Augmentation(top, left, flip);
    }

    internal void Apply(ReadOnlySpan<byte> image, int height, int width, Augmentation augmentation, Span<float> destination) =>
        Apply(image, height, width, 1, augmentation, destination);

    internal void Apply(ReadOnlySpan<byte> image, int height, int width, int channels, Augmentation augmentation, Span<float> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        if (channels != Channels)
        {
            throw new ArgumentException($"Expected {Channels}-channel images, got {channels} channels.", nameof(channels));
        }

        if (image.Length != height * width * channels)
        {
            throw new ArgumentException($"Expected {height * width * channels} bytes for a {height}x{width}x{channels} image, got {image.Length}.", nameof(image));
        }

        var size = TargetSize;
        if (destination.Length != OutputLength)
        {
            throw new ArgumentException($"Expected room for {OutputLength} floats, got {destination.Length}.", nameof(destination));
        }

        // One index map covers centring, cropping and flipping: output (y, x) reads source pixel
        // (y + rowShift, column(x) + columnShift), and anything outside the source is padding.
        var rowShift = augmentation.CropTop - CropPadding - ((size - height) / 2);
        var columnShift = augmentation.CropLeft - CropPadding - ((size - width) / 2);
        NormalizedWindow.Write(image, height, width, rowShift, columnShift, augmentation.Flip, size, _lookup, destination);
    }
}

/// <summary>
/// The random choices for one image: where the T×T crop starts inside the image padded by
/// <c>CropPadding</c> on each side (each in 0..2·CropPadding; CropPadding means centred), and
/// whether to mirror it.
/// </summary>
internal readonly record struct Augmentation(int CropTop, int CropLeft, bool Flip)
{
    public static Augmentation Centered(int cropPadding) => new(cropPadding, cropPadding, false);
}
