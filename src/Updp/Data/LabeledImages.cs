namespace Updp.Data;

/// <summary>
/// An in-memory set of single-channel uint8 images (N×H×W, row-major) with one class label each.
/// Instances never change after construction; <see cref="Take"/> and <see cref="Subset"/> return
/// new sets.
/// </summary>
public sealed class LabeledImages : ImageDataset
{
    private readonly byte[] _pixels;
    private readonly byte[] _labels;

    /// <summary>Wraps existing arrays without copying them; do not modify them afterwards.</summary>
    /// <param name="pixels">N×H×W pixels, image after image.</param>
    /// <param name="labels">N labels, each below <c>classNames.Count</c>.</param>
    /// <param name="height">Image height H.</param>
    /// <param name="width">Image width W.</param>
    /// <param name="classNames">Human-readable name of each class, indexed by label.</param>
    public LabeledImages(byte[] pixels, byte[] labels, int height, int width, IReadOnlyList<string> classNames)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(classNames);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        if (classNames.Count is 0 or > 256)
        {
            throw new ArgumentException($"Byte labels allow 1 to 256 classes, got {classNames.Count}.", nameof(classNames));
        }

        if ((long)labels.Length * height * width != pixels.Length)
        {
            throw new ArgumentException(
                $"{labels.Length} labels need {(long)labels.Length * height * width} pixels of {height}x{width} images, got {pixels.Length}.",
                nameof(pixels));
        }

        var firstBad = Array.FindIndex(labels, label => label >= classNames.Count);
        if (firstBad >= 0)
        {
            throw new ArgumentException($"Label {labels[firstBad]} at index {firstBad} is not below the class count {classNames.Count}.", nameof(labels));
        }

        _pixels = pixels;
        _labels = labels;
        Height = height;
        Width = width;
        ClassNames = classNames;
    }

    /// <inheritdoc/>
    public override int Count => _labels.Length;

    /// <summary>Image height in pixels.</summary>
    public int Height { get; }

    /// <summary>Image width in pixels.</summary>
    public int Width { get; }

    /// <summary>Pixels per image, H×W (there is one channel).</summary>
    public int PixelsPerImage => Height * Width;

    /// <inheritdoc/>
    public override IReadOnlyList<string> ClassNames { get; }

    /// <inheritdoc/>
    public override string Origin => "in-memory images";

    /// <inheritdoc/>
    public override int LabelOf(int index) => _labels[index];

    /// <inheritdoc/>
    public override PixelImage GetPixels(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        return new PixelImage(_pixels.AsMemory(index * PixelsPerImage, PixelsPerImage), Height, Width, 1);
    }

    /// <summary>All pixels, N×H×W.</summary>
    public ReadOnlySpan<byte> Pixels => _pixels;

    /// <summary>All labels, one per image.</summary>
    public ReadOnlySpan<byte> Labels => _labels;

    /// <summary>The H×W pixels of one image.</summary>
    public ReadOnlySpan<byte> GetImage(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        return _pixels.AsSpan(index * PixelsPerImage, PixelsPerImage);
    }

    /// <summary>The first <c>min(count, Count)</c> images, for quick runs on a slice.</summary>
    public new LabeledImages Take(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count >= Count)
        {
            return this;
        }

        return new LabeledImages(
            _pixels.AsSpan(0, count * PixelsPerImage).ToArray(), _labels.AsSpan(0, count).ToArray(), Height, Width, ClassNames);
    }

    /// <summary>The images at <paramref name="indices"/>, in that order (repeats allowed).</summary>
    public override LabeledImages Subset(ReadOnlySpan<int> indices)
    {
        var size = PixelsPerImage;
        var pixels = new byte[(long)indices.Length * size];
        var labels = new byte[indices.Length];
        for (var i = 0; i < indices.Length; i++)
        {
            var source = indices[i];
            if ((uint)source >= (uint)Count)
            {
                throw new ArgumentOutOfRangeException(nameof(indices), $"Index {source} at position {i} is outside 0..{Count - 1}.");
            }

            _pixels.AsSpan(source * size, size).CopyTo(pixels.AsSpan(i * size, size));
            labels[i] = _labels[source];
        }

        return new LabeledImages(pixels, labels, Height, Width, ClassNames);
    }

    internal LabeledImages WithClassNames(IReadOnlyList<string> classNames) => new(_pixels, _labels, Height, Width, classNames);

    /// <summary>
    /// Reads a pair of idx files. Class names default to "0", "1", … up to the largest label.
    /// </summary>
    /// <exception cref="InvalidDataException">A file is malformed, or the two files disagree on the image count.</exception>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    public static LabeledImages FromIdxFiles(string imagesPath, string labelsPath, IReadOnlyList<string>? classNames = null)
    {
        var images = IdxReader.ReadImages(imagesPath);
        var labels = IdxReader.ReadLabels(labelsPath);
        if (images.Count != labels.Length)
        {
            throw new InvalidDataException(
                $"Image/label count mismatch: '{imagesPath}' holds {images.Count} images but '{labelsPath}' holds {labels.Length} labels.");
        }

        classNames ??= NumberedClassNames(labels.Length == 0 ? 1 : labels.Max() + 1);
        var firstBad = Array.FindIndex(labels, label => label >= classNames.Count);
        if (firstBad >= 0)
        {
            throw new InvalidDataException(
                $"Labels file '{labelsPath}' has label {labels[firstBad]} at index {firstBad}, but the dataset has only {classNames.Count} classes.");
        }

        return new LabeledImages(images.Pixels, labels, images.Rows, images.Cols, classNames);
    }

    /// <summary>Class names "0", "1", …, <c>count - 1</c>.</summary>
    public static IReadOnlyList<string> NumberedClassNames(int count) =>
        Enumerable.Range(0, count).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
}
