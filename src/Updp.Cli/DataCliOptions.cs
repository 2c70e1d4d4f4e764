using System.CommandLine;
using System.Globalization;
using Updp.Data;

namespace Updp.Cli;

/// <summary>
/// The options that say how a verb reads its data, declared once: the data set, bad-image
/// handling and the decoded cache for every verb that reads data, and the preprocessing
/// overrides for the verbs that make a model (a checkpoint's recorded preprocessing wins).
/// </summary>
internal sealed class DataCliOptions
{
    private readonly bool _withPreprocessing;

    public DataCliOptions(bool withPreprocessing)
    {
        _withPreprocessing = withPreprocessing;
    }

    /// <summary>Smallest input side a model is built for.</summary>
    public const int MinInputSize = 8;

    /// <summary>Largest input side: 2048² RGB float batches already take 48 MB per image.</summary>
    public const int MaxInputSize = 2048;

    public Option<string> Data { get; } = CommonOptions.Data();

    public Option<bool> SkipBadImages { get; } =
        new Option<bool>("--skip-bad-images") { Description = "Leave out image files that cannot be used (unreadable, truncated, too small or too large) and count them, instead of stopping at the first." };

    public Option<string?> Cache { get; } =
        new Option<string?>("--cache") { Description = "Directory for a decoded cache of image-folder data: images decoded once (resized to the evaluation resize) into a memory-mapped file; rebuilt when the files or sizes change." }.OutputPath(isDirectory: true);

    public Option<string?> Mean { get; } = new Option<string?>("--mean") { Description = "Normalisation mean, one value or one per channel, e.g. 0.485,0.456,0.406 (default: ImageNet's for image folders)." };

    public Option<string?> Std { get; } = new Option<string?>("--std") { Description = "Normalisation std, one value or one per channel (default: ImageNet's for image folders)." };

    public Option<double?> CropPct { get; } = new Option<double?>("--crop-pct") { Description = "Evaluation keeps the centre crop_pct of the image resized to size/crop_pct (default 0.875)." }.Range(0.25, 2);

    public Option<string?> Interpolation { get; } = new Option<string?>("--interpolation") { Description = "Resize filter: bicubic (default) or bilinear." };

    public Option<string?> Scale { get; } = new Option<string?>("--scale") { Description = "Random-resized-crop area range MIN,MAX (default 0.08,1; small objects in small images want a larger MIN)." };

    public Option<string?> Ratio { get; } = new Option<string?>("--ratio") { Description = "Random-resized-crop aspect-ratio range MIN,MAX (default 0.75,1.3333)." };

    public Option<string?> Transform { get; } = new Option<string?>("--transform") { Description = "pad (MNIST-style: pad to the input size, random crop) or resize_crop (timm's); default by data kind." };

    public Option<int?> InChans { get; } = new Option<int?>("--in-chans") { Description = "Input channels of a new model: 1 or 3 (default 1 for MNIST-style data, 3 for image folders)." }.Range(1, 64);

    public IEnumerable<Option> All =>
        _withPreprocessing
            ? [Data, SkipBadImages, Cache, Mean, Std, CropPct, Interpolation, Scale, Ratio, Transform, InChans]
            : [Data, SkipBadImages, Cache];

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var option in All)
        {
            command.Options.Add(option);
        }
    }

    /// <summary>The data options given, checked; errors name the option and what it accepts.</summary>
    public DataOptions Read(ParseResult parse, int? inputSize = null)
    {
        var options = new DataOptions
        {
            InputSize = inputSize,
            SkipBadImages = parse.GetValue(SkipBadImages),
            CacheDirectory = parse.GetValue(Cache),
            Progress = new DataProgressPrinter(),
        };
        if (!_withPreprocessing)
        {
            return options;
        }

        var mean = Floats("--mean", parse.GetValue(Mean), v => float.IsFinite(v), "finite numbers");
        var std = Floats("--std", parse.GetValue(Std), v => float.IsFinite(v) && v > 0, "positive finite numbers");
        var channels = parse.GetValue(InChans);
        if (channels is not (null or 1 or 3))
        {
            throw new ArgumentException($"--in-chans must be 1 or 3, got {channels}");
        }
        foreach (var (name, values) in new[] { ("--mean", mean), ("--std", std) })
        {
            if (values is { Length: not 1 and not 3 })
            {
                throw new ArgumentException($"{name} takes one value or three (one per RGB channel), got {values.Length}");
            }
        }
        var cropPct = parse.GetValue(CropPct);
        var transform = parse.GetValue(Transform)?.Replace('-', '_');
        if (transform is not (null or Preprocessing.PadTransform or Preprocessing.ResizeCropTransformName))
        {
            throw new ArgumentException($"--transform must be pad or resize_crop, got '{parse.GetValue(Transform)}'");
        }
        return options with
        {
            Mean = mean,
            Std = std,
            Channels = channels,
            CropPct = cropPct,
            Interpolation = parse.GetValue(Interpolation) is { } i ? ParseInterpolation(i) : null,
            Scale = Range("--scale", parse.GetValue(Scale), (lo, hi) => lo > 0 && lo <= hi && hi <= 1, "0 < MIN ≤ MAX ≤ 1"),
            Ratio = Range("--ratio", parse.GetValue(Ratio), (lo, hi) => lo > 0 && lo <= hi && double.IsFinite(hi), "0 < MIN ≤ MAX"),
            Transform = transform,
        };
    }

    private static Interpolation ParseInterpolation(string value)
    {
        try
        {
            return Resampling.Parse(value);
        }
        catch (ArgumentException)
        {
            throw new ArgumentException($"--interpolation must be bicubic or bilinear, got '{value}'");
        }
    }

    private static float[]? Floats(string option, string? value, Func<float, bool> valid, string expected)
    {
        if (value is null)
        {
            return null;
        }
        var values = new List<float>();
        foreach (var token in value.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!float.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !valid(v))
            {
                throw new ArgumentException($"{option} '{value}': '{token}' is not valid; expected comma-separated {expected}");
            }
            values.Add(v);
        }
        return [.. values];
    }

    private static (double, double)? Range(string option, string? value, Func<double, double, bool> valid, string expected)
    {
        if (value is null)
        {
            return null;
        }
        var parts = value.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 2
            || !double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var lo)
            || !double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var hi)
            || !valid(lo, hi))
        {
            throw new ArgumentException($"{option} '{value}': expected MIN,MAX with {expected}");
        }
        return (lo, hi);
    }
}

/// <summary>Prints progress of the data checks and cache builds on stderr, at most every two seconds per stage.</summary>
internal sealed class DataProgressPrinter : IProgress<(string Stage, int Done, int Total)>
{
    private readonly object _gate = new();
    private string? _stage;
    private DateTime _last = DateTime.MinValue;

    public void Report((string Stage, int Done, int Total) value)
    {
        lock (_gate)
        {
            var now = DateTime.UtcNow;
            var finished = value.Done == value.Total;
            if (value.Stage == _stage && !finished && now - _last < TimeSpan.FromSeconds(2))
            {
                return;
            }
            if (value.Total < 2048 && !value.Stage.StartsWith("caching", StringComparison.Ordinal) && !finished)
            {
                return;
            }
            _stage = value.Stage;
            _last = now;
            if (value.Total >= 2048 || value.Stage.StartsWith("caching", StringComparison.Ordinal))
            {
                Console.Error.WriteLine($"{value.Stage}: {value.Done:N0}/{value.Total:N0}");
            }
        }
    }
}
