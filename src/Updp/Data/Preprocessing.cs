using System.Text.Json.Serialization;

namespace Updp.Data;

/// <summary>
/// How images were prepared for a model: recorded in its checkpoint so that evaluation,
/// prediction, export checks and benchmarks feed it exactly what it was trained on. Two kinds:
/// MNIST-style (<see cref="Transform"/> null or <c>pad</c>: small images zero-padded to the input
/// size, random crop with padding for training) and timm's ImageNet style (<c>resize_crop</c>:
/// <see cref="ResizeCropTransform"/>).
/// </summary>
/// <param name="ImageSize">Side of the square source images for the <c>pad</c> kind (28 for the MNIST family); the input size for <c>resize_crop</c>.</param>
/// <param name="InputSize">Side of the square network input.</param>
/// <param name="Mean">Normalisation mean of pixel values in [0, 1] (the first channel's when <see cref="ChannelMean"/> is set).</param>
/// <param name="Std">Normalisation standard deviation (the first channel's when <see cref="ChannelStd"/> is set).</param>
public sealed record Preprocessing(
    [property: JsonPropertyName("image_size")] int ImageSize,
    [property: JsonPropertyName("input_size")] int InputSize,
    [property: JsonPropertyName("mean")] float Mean,
    [property: JsonPropertyName("std")] float Std)
{
    /// <summary>The <see cref="Transform"/> of MNIST-style data (also what a missing value means).</summary>
    public const string PadTransform = "pad";

    /// <summary>The <see cref="Transform"/> of timm's ImageNet-style preprocessing.</summary>
    public const string ResizeCropTransformName = "resize_crop";

    /// <summary><c>pad</c> (or null, as sidecars before image folders have it) or <c>resize_crop</c>.</summary>
    [JsonPropertyName("transform")] public string? Transform { get; init; }

    /// <summary>Image channels the model takes; null means 1 (sidecars before image folders).</summary>
    [JsonPropertyName("channels")] public int? Channels { get; init; }

    /// <summary>Per-channel means when there are several channels.</summary>
    [JsonPropertyName("channel_mean")] public IReadOnlyList<float>? ChannelMean { get; init; }

    /// <summary>Per-channel standard deviations when there are several channels.</summary>
    [JsonPropertyName("channel_std")] public IReadOnlyList<float>? ChannelStd { get; init; }

    /// <summary><c>resize_crop</c>: share of the resized image the evaluation centre crop keeps.</summary>
    [JsonPropertyName("crop_pct")] public double? CropPct { get; init; }

    /// <summary><c>resize_crop</c>: <c>bicubic</c> or <c>bilinear</c>.</summary>
    [JsonPropertyName("interpolation")] public string? Interpolation { get; init; }

    /// <summary><c>resize_crop</c> training: range of the random crop's area share.</summary>
    [JsonPropertyName("scale")] public IReadOnlyList<double>? Scale { get; init; }

    /// <summary><c>resize_crop</c> training: range of the random crop's aspect ratio.</summary>
    [JsonPropertyName("ratio")] public IReadOnlyList<double>? Ratio { get; init; }

    /// <summary>Channels the model takes (1 unless recorded).</summary>
    [JsonIgnore] public int ChannelCount => Channels ?? 1;

    /// <summary>Whether this is timm's resize-and-crop preprocessing.</summary>
    [JsonIgnore] public bool IsResizeCrop => Transform == ResizeCropTransformName;

    /// <summary>The one-channel normalisation of the <c>pad</c> kind.</summary>
    [JsonIgnore] public Normalization Normalization => new(Mean, Std);

    /// <summary>The normalisation of every channel.</summary>
    [JsonIgnore]
    public ChannelNormalization ChannelNormalization =>
        ChannelMean is { } mean && ChannelStd is { } std
            ? new ChannelNormalization(mean, std)
            : ChannelNormalization.From(Normalization).ForChannels(ChannelCount);

    /// <summary>The MNIST-style preprocessing of <paramref name="images"/>: pad to <paramref name="inputSize"/>.</summary>
    public static Preprocessing For(LabeledImages images, Normalization normalization, int inputSize) =>
        new(images.Height, inputSize, normalization.Mean, normalization.Std);

    /// <summary>timm's ImageNet-style preprocessing for <paramref name="inputSize"/>² inputs of <paramref name="channels"/> channels.</summary>
    public static Preprocessing ResizeCrop(int inputSize, int channels, ChannelNormalization? normalization = null,
        double cropPct = ResizeCropTransform.DefaultCropPct, Interpolation interpolation = Data.Interpolation.Bicubic,
        (double Min, double Max)? scale = null, (double Min, double Max)? ratio = null)
    {
        var norm = (normalization ?? ChannelNormalization.ImageNet).ForChannels(channels);
        var s = scale ?? ResizeCropTransform.DefaultScale;
        var r = ratio ?? ResizeCropTransform.DefaultRatio;
        return new Preprocessing(inputSize, inputSize, norm.Mean[0], norm.Std[0])
        {
            Transform = ResizeCropTransformName,
            Channels = channels,
            ChannelMean = norm.Mean,
            ChannelStd = norm.Std,
            CropPct = cropPct,
            Interpolation = Resampling.Name(interpolation),
            Scale = [s.Min, s.Max],
            Ratio = [r.Min, r.Max],
        };
    }

    /// <summary>The resampling filter of <c>resize_crop</c> (bicubic unless recorded otherwise).</summary>
    [JsonIgnore] public Interpolation InterpolationKind => Interpolation is { } name ? Resampling.Parse(name) : Data.Interpolation.Bicubic;

    /// <summary>The deterministic transform of evaluation, prediction and checks.</summary>
    public IImageTransform EvaluationTransform() =>
        IsResizeCrop
            ? ResizeCropTransform.ForEvaluation(InputSize, ChannelNormalization, InterpolationKind, CropPct ?? ResizeCropTransform.DefaultCropPct)
            : ImageTransform.ForEvaluation(ChannelNormalization, InputSize);

    /// <summary>
    /// The training augmentation: random resized crop and flip for <c>resize_crop</c>; for <c>pad</c>
    /// a random crop of the image padded by <paramref name="cropPadding"/> and a flip.
    /// </summary>
    public IImageTransform TrainingTransform(int cropPadding, bool horizontalFlip) =>
        IsResizeCrop
            ? ResizeCropTransform.ForTraining(InputSize, ChannelNormalization, InterpolationKind,
                Scale is [var s0, var s1] ? (s0, s1) : null, Ratio is [var r0, var r1] ? (r0, r1) : null, horizontalFlip,
                CropPct ?? ResizeCropTransform.DefaultCropPct)
            : ImageTransform.ForTraining(ChannelNormalization, InputSize, cropPadding, horizontalFlip);

    /// <summary>Side the shorter side of images is resized to before the evaluation crop (a decoded cache stores images at it).</summary>
    [JsonIgnore] public int ResizeSize => IsResizeCrop ? ResizeCropTransform.ResizeSizeFor(InputSize, CropPct ?? ResizeCropTransform.DefaultCropPct) : InputSize;

    /// <inheritdoc/>
    public bool Equals(Preprocessing? other) =>
        other is not null && ImageSize == other.ImageSize && InputSize == other.InputSize && Mean.Equals(other.Mean) && Std.Equals(other.Std)
        && (Transform ?? PadTransform) == (other.Transform ?? PadTransform) && ChannelCount == other.ChannelCount
        && Same(ChannelMean, other.ChannelMean) && Same(ChannelStd, other.ChannelStd) && CropPct == other.CropPct
        && Interpolation == other.Interpolation && Same(Scale, other.Scale) && Same(Ratio, other.Ratio);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(ImageSize, InputSize, Mean, Std, Transform ?? PadTransform, ChannelCount);

    private static bool Same<T>(IReadOnlyList<T>? a, IReadOnlyList<T>? b) => a is null ? b is null : b is not null && a.SequenceEqual(b);

    /// <summary>One line for messages.</summary>
    public string Describe() =>
        IsResizeCrop
            ? $"resize_crop {InputSize}px, {ChannelCount} channels, crop_pct {CropPct:G4}, {Interpolation}, {ChannelNormalization}"
            : $"pad {ImageSize}px to {InputSize}px, {ChannelCount} channel(s), {ChannelNormalization}";
}
