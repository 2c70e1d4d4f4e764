using System.Globalization;
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
            ["seed"] = t.Seed.ToString(c),
            ["epochs"] = t.Epochs.ToString(c),
            ["batch_size"] = t.BatchSize.ToString(c),
            ["lr"] = t.LearningRate.ToString("R", c),
            ["min_lr"] = t.MinLearningRate.ToString("R", c),
            ["weight_decay"] = t.WeightDecay.ToString("R", c),
            ["warmup_epochs"] = t.WarmupEpochs.ToString("R", c),
            ["label_smoothing"] = t.LabelSmoothing.ToString("R", c),
            ["max_steps"] = t.MaxStepsPerEpoch?.ToString(c) ?? "all",
            ["crop_padding"] = options.CropPadding.ToString(c),
            ["flip"] = options.HorizontalFlip ? "yes" : "no",
            ["drop_path"] = options.DropPathRate.ToString("R", c),
            ["layer_scale_init"] = options.LayerScaleInit?.ToString("R", c) ?? "default",
            ["init"] = options.InitCheckpoint is { } init ? "checkpoint " + FullPath(init)
                : options.Pretrained is { } pretrained ? "pretrained " + FullPath(pretrained) : "random",
        };
        foreach (var (key, value) in stage ?? new Dictionary<string, string>())
        {
            values[key] = value;
        }
        return new RunSettings(values);
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
    private static string DataIdentity(string data, RunData run)
    {
        var splits = run.Splits;
        return string.Create(CultureInfo.InvariantCulture,
            $"{FullPath(data)} ({splits.Train.ClassCount} classes; {splits.Train.Count} train, {splits.Validation.Count} val, {splits.Test.Count} {splits.TestName} images)");
    }

    private static string FullPath(string path) => File.Exists(path) || Directory.Exists(path) ? Path.GetFullPath(path) : path;
}
