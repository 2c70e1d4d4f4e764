using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Serialization;

namespace Updp.Training;

/// <summary>
/// What defines a training run (model, data identity, held-out split, seed, recipe, and the
/// stage's own settings) as text, recorded in the run directory's <c>run.json</c>: a run is
/// resumed only with the settings it was started with.
/// </summary>
public sealed record RunSettings([property: JsonPropertyName("settings")] IReadOnlyDictionary<string, string> Values)
{
    /// <summary>The settings of a run of <paramref name="options"/> on <paramref name="data"/>, plus a stage's own.</summary>
    public static RunSettings Of(TrainRunOptions options, RunData data, IReadOnlyDictionary<string, string>? stage = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(data);
        var c = CultureInfo.InvariantCulture;
        var t = options.Train;
        var values = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["model"] = options.ModelName,
            ["data"] = DataIdentity(options.Data, data),
            ["preprocessing"] = data.Preprocessing.ToString(),
            ["validation_count"] = data.Split.ValidationCount?.ToString(c) ?? "default",
            ["split_seed"] = data.Split.Seed.ToString(c),
            ["train_limit"] = options.TrainLimit?.ToString(c) ?? "all",
            ["crop_padding"] = options.CropPadding.ToString(c),
            ["flip"] = options.HorizontalFlip ? "yes" : "no",
            ["drop_path"] = options.DropPathRate.ToString("R", c),
            ["layer_scale_init"] = options.LayerScaleInit?.ToString("R", c) ?? "default",
            ["init"] = options.InitCheckpoint is { } init ? "checkpoint " + FullPath(init)
                : options.Pretrained is { } pretrained ? "pretrained " + FullPath(pretrained) : "random",
        };
        foreach (var (key, value) in Recipe(t).Concat(stage ?? new Dictionary<string, string>()))
        {
            values[key] = value;
        }
        return new RunSettings(values);
    }

    /// <summary>The settings of a training recipe, each key prefixed with <paramref name="prefix"/> (e.g. <c>supernet_</c>).</summary>
    public static IEnumerable<KeyValuePair<string, string>> Recipe(TrainOptions train, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(train);
        var c = CultureInfo.InvariantCulture;
        return new Dictionary<string, string>
        {
            ["seed"] = train.Seed.ToString(c),
            ["epochs"] = train.Epochs.ToString(c),
            ["batch_size"] = train.BatchSize.ToString(c),
            ["lr"] = train.LearningRate.ToString("R", c),
            ["min_lr"] = train.MinLearningRate.ToString("R", c),
            ["weight_decay"] = train.WeightDecay.ToString("R", c),
            ["warmup_epochs"] = train.WarmupEpochs.ToString("R", c),
            ["label_smoothing"] = train.LabelSmoothing.ToString("R", c),
            ["max_steps"] = train.MaxStepsPerEpoch?.ToString(c) ?? "all",
        }.Select(kv => KeyValuePair.Create(prefix + kv.Key, kv.Value));
    }

    /// <summary>
    /// A file as a run records it: its full path and the start of its SHA-256, so that a file
    /// replaced at the same path (a baseline trained again) is not taken for the one a run started from.
    /// </summary>
    public static string FileIdentity(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        var hash = Convert.ToHexStringLower(SHA256.HashData(stream));
        return $"{Path.GetFullPath(path)} (sha256 {hash[..16]})";
    }

    /// <summary>"key: recorded → given" for every setting that differs from <paramref name="given"/>.</summary>
    public IReadOnlyList<string> Differences(RunSettings given)
    {
        ArgumentNullException.ThrowIfNull(given);
        return Values.Keys.Union(given.Values.Keys).Order(StringComparer.Ordinal)
            .Where(k => Values.GetValueOrDefault(k) != given.Values.GetValueOrDefault(k))
            .Select(k => $"{k}: {Values.GetValueOrDefault(k) ?? "(none)"} → {given.Values.GetValueOrDefault(k) ?? "(none)"}")
            .ToList();
    }

    // Where the data is and what it holds: a named data set or the full path, with its classes and split sizes.
    internal static string DataIdentity(string data, RunData run)
    {
        var splits = run.Splits;
        return string.Create(CultureInfo.InvariantCulture,
            $"{FullPath(data)} ({splits.Train.ClassCount} classes; {splits.Train.Count} train, {splits.Validation.Count} val, {splits.Test.Count} {splits.TestName} images)");
    }

    private static string FullPath(string path) => File.Exists(path) || Directory.Exists(path) ? Path.GetFullPath(path) : path;
}

/// <summary>A run directory holds a run started with other settings than the ones given.</summary>
public sealed class RunSettingsMismatchException(string directory, IReadOnlyList<string> differences, string message) : ArgumentException(message)
{
    /// <summary>The run directory.</summary>
    public string Directory { get; } = directory;

    /// <summary>"key: recorded → given" for each setting that differs (<see cref="RunSettings.Differences"/>).</summary>
    public IReadOnlyList<string> Differences { get; } = differences;
}
