namespace Updp.Data;

/// <summary>
/// How a run reads its data beyond the data set's name: preprocessing overrides for a model trained
/// from scratch or from a foreign checkpoint (a checkpoint's recorded preprocessing wins over them),
/// bad-image handling and the decoded cache.
/// </summary>
public sealed record DataOptions
{
    /// <summary>Network input side; default 32 for MNIST-style data, 224 for image folders.</summary>
    public int? InputSize { get; init; }

    /// <summary>Input channels; default 1 for MNIST-style data, 3 for image folders.</summary>
    public int? Channels { get; init; }

    /// <summary>Per-channel (or one) normalisation means; default ImageNet's for image folders, the data's own for MNIST-style data.</summary>
    public IReadOnlyList<float>? Mean { get; init; }

    /// <summary>Per-channel (or one) normalisation standard deviations.</summary>
    public IReadOnlyList<float>? Std { get; init; }

    /// <summary><c>resize_crop</c>: share of the resized image the evaluation crop keeps (default 0.875).</summary>
    public double? CropPct { get; init; }

    /// <summary><c>resize_crop</c>: resampling filter (default bicubic).</summary>
    public Interpolation? Interpolation { get; init; }

    /// <summary><c>resize_crop</c> training: random crop area range (default 0.08–1).</summary>
    public (double Min, double Max)? Scale { get; init; }

    /// <summary><c>resize_crop</c> training: random crop aspect-ratio range (default 3/4–4/3).</summary>
    public (double Min, double Max)? Ratio { get; init; }

    /// <summary><c>pad</c> or <c>resize_crop</c>; default <c>pad</c> for MNIST-style data, <c>resize_crop</c> for image folders.</summary>
    public string? Transform { get; init; }

    /// <summary>Leave out images that cannot be used, and count them, instead of failing.</summary>
    public bool SkipBadImages { get; init; }

    /// <summary>Only the test split is needed (evaluation): the others are not checked or cached.</summary>
    public bool TestOnly { get; init; }

    /// <summary>Directory of decoded caches (<see cref="DecodedImageCache"/>); null decodes every epoch.</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Receives (what, done, total) while files are checked and the cache is built.</summary>
    public IProgress<(string Stage, int Done, int Total)>? Progress { get; init; }

    /// <summary>
    /// The preprocessing for <paramref name="splits"/> when no checkpoint records one: the defaults of
    /// the data's kind with these overrides.
    /// </summary>
    public Preprocessing DefaultPreprocessing(DataSplits splits)
    {
        ArgumentNullException.ThrowIfNull(splits);
        var transform = Transform ?? (splits.IsIdx ? Preprocessing.PadTransform : Preprocessing.ResizeCropTransformName);
        var channels = Channels ?? (splits.IsIdx ? 1 : 3);
        foreach (var (name, values) in new[] { ("--mean", Mean), ("--std", Std) })
        {
            if (values is not null && values.Count != 1 && values.Count != channels)
            {
                throw new ArgumentException($"{name} has {values.Count} values; a {channels}-channel model takes 1 or {channels}");
            }
        }

        // What is not given keeps the default of the data's kind: its own statistics for MNIST-style
        // data, ImageNet's otherwise.
        var defaults = splits.IsIdx && transform == Preprocessing.PadTransform
            ? ChannelNormalization.From(splits.Normalization).ForChannels(channels)
            : ChannelNormalization.ImageNet.ForChannels(channels);
        ChannelNormalization? normalization = Mean is not null || Std is not null
            ? new ChannelNormalization(
                Spread(Mean, channels) ?? defaults.Mean, Spread(Std, channels) ?? defaults.Std)
            : null;
        switch (transform)
        {
            case Preprocessing.ResizeCropTransformName:
                return Preprocessing.ResizeCrop(InputSize ?? 224, channels, normalization, CropPct ?? ResizeCropTransform.DefaultCropPct,
                    Interpolation ?? Data.Interpolation.Bicubic, Scale, Ratio);
            case Preprocessing.PadTransform:
                var norm = normalization ?? defaults;
                var inputSize = InputSize ?? ImageTransform.DefaultTargetSize;
                var imageSize = splits.Train is LabeledImages idx ? idx.Height : inputSize;
                return new Preprocessing(imageSize, inputSize, norm.Mean[0], norm.Std[0])
                {
                    Transform = splits.IsIdx && channels == 1 && Transform is null ? null : Preprocessing.PadTransform,
                    Channels = channels == 1 ? null : channels,
                    ChannelMean = channels == 1 ? null : norm.Mean,
                    ChannelStd = channels == 1 ? null : norm.Std,
                };
            default:
                throw new ArgumentException($"--transform '{transform}' is not known; expected {Preprocessing.PadTransform} or {Preprocessing.ResizeCropTransformName}");
        }
    }

    private static IReadOnlyList<float>? Spread(IReadOnlyList<float>? values, int channels) =>
        values is [var one] && channels > 1 ? Enumerable.Repeat(one, channels).ToArray() : values;
}
