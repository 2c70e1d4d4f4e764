namespace Updp.Data;

/// <summary>
/// timm's ImageNet transforms for images of any size (docs/DATA.md). Training: <c>RandomResizedCrop(T, scale, ratio)</c> then a horizontal flip with
/// probability 0.5. Evaluation: resize the shorter side to ⌊T / crop_pct⌋, then the centre T×T crop.
/// Both resize as PIL does (<see cref="Resampling"/>), then normalise per channel, so inputs equal
/// torchvision's to float rounding.
/// </summary>
public sealed class ResizeCropTransform : IImageTransform
{
    /// <summary>timm's default share of the resized image the centre crop keeps.</summary>
    public const double DefaultCropPct = 0.875;

    /// <summary>RandomResizedCrop's default range of the crop's area as a share of the image's.</summary>
    public static readonly (double Min, double Max) DefaultScale = (0.08, 1.0);

    /// <summary>RandomResizedCrop's default range of the crop's aspect ratio (width / height).</summary>
    public static readonly (double Min, double Max) DefaultRatio = (3.0 / 4.0, 4.0 / 3.0);

    private readonly float[][] _lookup;

    private ResizeCropTransform(int targetSize, ChannelNormalization normalization, Interpolation interpolation, double cropPct,
        bool training, (double Min, double Max) scale, (double Min, double Max) ratio, bool horizontalFlip)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(targetSize);
        ArgumentNullException.ThrowIfNull(normalization);
        if (!(cropPct > 0) || !double.IsFinite(cropPct))
        {
            throw new ArgumentOutOfRangeException(nameof(cropPct), cropPct, "crop_pct must be positive and finite");
        }

        if (!(scale.Min > 0) || !(scale.Max >= scale.Min) || scale.Max > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(scale), scale, "scale must satisfy 0 < min ≤ max ≤ 1");
        }

        if (!(ratio.Min > 0) || !(ratio.Max >= ratio.Min) || !double.IsFinite(ratio.Max))
        {
            throw new ArgumentOutOfRangeException(nameof(ratio), ratio, "ratio must satisfy 0 < min ≤ max < ∞");
        }

        TargetSize = targetSize;
        Normalization = normalization;
        Interpolation = interpolation;
        CropPct = cropPct;
        Training = training;
        Scale = scale;
        Ratio = ratio;
        HorizontalFlip = horizontalFlip;
        _lookup = normalization.LookupTables();
    }

    /// <inheritdoc/>
    public int TargetSize { get; }

    /// <summary>Normalisation applied last, one mean and std per channel.</summary>
    public ChannelNormalization Normalization { get; }

    /// <summary>Resampling filter of every resize.</summary>
    public Interpolation Interpolation { get; }

    /// <summary>Evaluation keeps the centre <c>crop_pct</c> of the image resized to ⌊T / crop_pct⌋.</summary>
    public double CropPct { get; }

    /// <summary>Whether this is the training transform (random crop and flip) or the evaluation one.</summary>
    public bool Training { get; }

    /// <summary>Range of the random crop's area as a share of the image's area.</summary>
    public (double Min, double Max) Scale { get; }

    /// <summary>Range of the random crop's aspect ratio (width / height), sampled log-uniformly.</summary>
    public (double Min, double Max) Ratio { get; }

    /// <summary>Whether training mirrors images left-right with probability 0.5.</summary>
    public bool HorizontalFlip { get; }

    /// <inheritdoc/>
    public int Channels => Normalization.Channels;

    /// <inheritdoc/>
    public int OutputLength => Channels * TargetSize * TargetSize;

    /// <inheritdoc/>
    public bool IsRandom => Training;

    /// <summary>Side the evaluation transform resizes the shorter side to: ⌊T / crop_pct⌋, as timm computes it.</summary>
    public int ResizeSize => ResizeSizeFor(TargetSize, CropPct);

    /// <summary>⌊<paramref name="targetSize"/> / <paramref name="cropPct"/>⌋ (timm's <c>scale_size</c>).</summary>
    public static int ResizeSizeFor(int targetSize, double cropPct) => Math.Max(1, (int)Math.Floor(targetSize / cropPct));

    /// <summary>The training transform: random resized crop, flip, normalise.</summary>
    public static ResizeCropTransform ForTraining(int targetSize, ChannelNormalization normalization, Interpolation interpolation,
        (double Min, double Max)? scale = null, (double Min, double Max)? ratio = null, bool horizontalFlip = true, double cropPct = DefaultCropPct) =>
        new(targetSize, normalization, interpolation, cropPct, training: true, scale ?? DefaultScale, ratio ?? DefaultRatio, horizontalFlip);

    /// <summary>The evaluation transform: shorter side to ⌊T / crop_pct⌋, centre crop, normalise.</summary>
    public static ResizeCropTransform ForEvaluation(int targetSize, ChannelNormalization normalization, Interpolation interpolation,
        double cropPct = DefaultCropPct) =>
        new(targetSize, normalization, interpolation, cropPct, training: false, DefaultScale, DefaultRatio, horizontalFlip: false);

    /// <summary>
    /// torchvision's <c>Resize(size)</c> output for an image of <paramref name="width"/> ×
    /// <paramref name="height"/>: the shorter side becomes <paramref name="size"/>, the longer
    /// <c>int(size · long / short)</c> (truncated).
    /// </summary>
    public static (int Width, int Height) ShorterSideTo(int width, int height, int size)
    {
        if (width <= height)
        {
            return (size, (int)((long)size * height / (double)width));
        }

        return ((int)((long)size * width / (double)height), size);
    }

    /// <inheritdoc/>
    public void Apply(PixelImage image, Random random, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(random);
        image.Validate();
        if (image.Channels != Channels)
        {
            throw new ArgumentException($"expected {Channels}-channel images, got {image.Channels} channels");
        }

        if (destination.Length != OutputLength)
        {
            throw new ArgumentException($"expected room for {OutputLength} floats, got {destination.Length}", nameof(destination));
        }

        if (Training)
        {
            var crop = SampleCrop(image.Height, image.Width, random);
            var flip = HorizontalFlip && random.NextDouble() < 0.5;
            var pixels = Resampling.ResizeCrop(image, crop.Top, crop.Left, crop.Height, crop.Width, TargetSize, TargetSize, Interpolation);
            Write(pixels, TargetSize, TargetSize, 0, 0, flip, destination);
            return;
        }

        var (width, height) = ShorterSideTo(image.Width, image.Height, ResizeSize);
        var resized = width == image.Width && height == image.Height
            ? image.Pixels.ToArray()
            : Resampling.Resize(image, width, height, Interpolation);

        // torchvision's center_crop: offsets round((size − T) / 2) half-to-even, as Python's round;
        // a side shorter than T is padded with zeros on both sides first (crop_pct > 1).
        var top = CenterOffset(height, TargetSize);
        var left = CenterOffset(width, TargetSize);
        Write(resized, height, width, top, left, flip: false, destination);
    }

    /// <summary>
    /// torchvision's <c>RandomResizedCrop.get_params</c>: up to ten tries of an area share drawn
    /// uniformly from <see cref="Scale"/> and an aspect ratio drawn log-uniformly from
    /// <see cref="Ratio"/>; a crop that fits is placed uniformly; otherwise the largest centred crop
    /// within the ratio range.
    /// </summary>
    public CropBox SampleCrop(int height, int width, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        var area = (double)height * width;
        var (logMin, logMax) = (Math.Log(Ratio.Min), Math.Log(Ratio.Max));
        for (var attempt = 0; attempt < 10; attempt++)
        {
            var targetArea = area * (Scale.Min + (random.NextDouble() * (Scale.Max - Scale.Min)));
            var aspect = Math.Exp(logMin + (random.NextDouble() * (logMax - logMin)));
            var w = (int)Math.Round(Math.Sqrt(targetArea * aspect), MidpointRounding.ToEven);
            var h = (int)Math.Round(Math.Sqrt(targetArea / aspect), MidpointRounding.ToEven);
            if (w > 0 && w <= width && h > 0 && h <= height)
            {
                var top = random.Next(height - h + 1);
                var left = random.Next(width - w + 1);
                return new CropBox(top, left, h, w);
            }
        }

        var ratio = (double)width / height;
        int cropWidth = width, cropHeight = height;
        if (ratio < Ratio.Min)
        {
            cropHeight = Math.Max(1, (int)Math.Round(width / Ratio.Min, MidpointRounding.ToEven));
        }
        else if (ratio > Ratio.Max)
        {
            cropWidth = Math.Max(1, (int)Math.Round(height * Ratio.Max, MidpointRounding.ToEven));
        }

        return new CropBox((height - cropHeight) / 2, (width - cropWidth) / 2, cropHeight, cropWidth);
    }

    private static int CenterOffset(int size, int crop) =>
        size >= crop ? (int)Math.Round((size - crop) / 2.0, MidpointRounding.ToEven) : -((crop - size) / 2);

    private void Write(byte[] pixels, int height, int width, int top, int left, bool flip, Span<float> destination) =>
        NormalizedWindow.Write(pixels, height, width, top, left, flip, TargetSize, _lookup, destination);
}

/// <summary>A crop of an image: its top-left corner and size, in pixels.</summary>
/// <param name="Top">First row.</param>
/// <param name="Left">First column.</param>
/// <param name="Height">Rows.</param>
/// <param name="Width">Columns.</param>
public readonly record struct CropBox(int Top, int Left, int Height, int Width);
