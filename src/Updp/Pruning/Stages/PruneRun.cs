using System.Globalization;
using Updp.Benchmarks;
using Updp.Training;

namespace Updp.Pruning;

/// <summary>
/// The run directory of <see cref="PrunePipeline"/> as a whole: locked for the whole pipeline
/// (<see cref="RunLock"/>), with the settings that define the run recorded in <c>run.json</c>
/// (<see cref="RunSettings"/>), so that the finished stages a later run skips are the ones these
/// settings would produce. An interrupted run continues when run again with the same settings; a
/// finished one is reported again only with <see cref="PruneOptions.Resume"/>; other settings are
/// refused; <see cref="PruneOptions.Force"/> deletes the run's files and starts over.
/// </summary>
internal sealed class PruneRun : IDisposable
{
    private readonly RunLock _lock;
    private readonly RunSettings _settings;

    private PruneRun(RunLock runLock, RunSettings settings, string outDir)
    {
        _lock = runLock;
        _settings = settings;
        Record = Path.Combine(outDir, RunDirectory.RunName);
    }

    // Under the directory as the user named it, for the messages.
    private string Record { get; }

    /// <summary>
    /// Locks <see cref="PruneOptions.OutDir"/> and checks the run found there against
    /// <paramref name="options"/> (deleting it with <see cref="PruneOptions.Force"/>); the lock is
    /// held until disposed.
    /// </summary>
    /// <exception cref="RunInUseException">Another process is using the directory.</exception>
    /// <exception cref="RunSettingsMismatchException">The run there has other settings.</exception>
    /// <exception cref="ArgumentException">A finished run without resume or force, or a run that recorded no settings, without either.</exception>
    public static PruneRun Open(PruneOptions options, PruneContext context, IReadOnlyList<int> candidates)
    {
        var settings = Settings(options, context, candidates);
        var run = new PruneRun(RunLock.Acquire(options.OutDir, "updp prune"), settings, options.OutDir);
        try
        {
            run.Prepare(options);
            return run;
        }
        catch
        {
            run.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Records the settings once the whole run is done, when it did not at the start: a resumed run
    /// that had recorded none claims its stages only after each of them was checked and finished.
    /// </summary>
    public void Finished()
    {
        if (!File.Exists(Record))
        {
            RunDirectory.WriteJson(Record, _settings);
        }
    }

    public void Dispose() => _lock.Dispose();

    /// <summary>Every file a prune run writes in <paramref name="outDir"/>, existing or not.</summary>
    public static IEnumerable<string> Files(string outDir) =>
        new[]
            {
                RunDirectory.RunName, SubnetSearch.ResultFile, PrunePipeline.MergedFile, PrunePipeline.OnnxFile, PrunePipeline.MetricsFile, PrunePipeline.ReportFile,
                PrunePipeline.FrontierFigure, PrunePipeline.BlockLatencyFigure, PrunePipeline.TrainingFigure, PrunePipeline.LatencyTableFile,
            }
            .Select(name => Path.Combine(outDir, name))
            .Append(Checkpoints.Checkpoint.SidecarPath(Path.Combine(outDir, PrunePipeline.MergedFile)))
            .Concat(RunDirectory.RunFilesOf(PrunePipeline.SupernetDir(outDir), SupernetTraining.CheckpointName))
            .Concat(RunDirectory.RunFilesOf(PrunePipeline.FinetuneDir(outDir), ProgressiveFinetune.CheckpointName));

    private void Prepare(PruneOptions options)
    {
        var outDir = options.OutDir;
        var found = Files(outDir).Where(File.Exists).ToList();
        var unrecorded = found.Count > 0 && !File.Exists(Record);
        if (found.Count > 0 && options.Force)
        {
            found.ForEach(File.Delete);
            unrecorded = false;
        }
        else if (File.Exists(Record))
        {
            var differences = RunDirectory.ReadJson<RunSettings>(Record).Differences(_settings);
            if (differences.Count > 0)
            {
                throw new RunSettingsMismatchException(outDir, differences,
                    $"'{outDir}' holds a prune run started with other settings ({string.Join("; ", differences)}); give the same ones, choose another --out, or give --force to start over");
            }
            if (MeasureStage.Finished(outDir) && !options.Resume)
            {
                throw new ArgumentException(
                    $"'{outDir}' holds a finished prune run ({PrunePipeline.MetricsFile}, {PrunePipeline.ReportFile}); choose another --out, give --resume to report it again, or --force to replace it");
            }
        }
        else if (unrecorded && !options.Resume)
        {
            // A run directory of a version that did not record its settings: nothing to compare with.
            throw new ArgumentException(
                $"'{outDir}' holds a prune run that recorded no settings; give --resume to continue it as it is, or --force to start over");
        }
        // Temporary files of a save that was interrupted (kill -9, a full disk) hold nothing of value.
        foreach (var tmp in Directory.EnumerateFiles(outDir, ".*.tmp"))
        {
            File.Delete(tmp);
        }
        // Written only when new, so that a finished run reported again changes no file.
        if (!unrecorded)
        {
            Finished();
        }
    }

    /// <summary>
    /// What defines a prune run: the baseline (path and content), the data and its split, the
    /// calibration, K and the latency budget, the candidates, the method, the supernet given or
    /// trained (its K_max and recipe), the search, the fine-tuning recipe, distillation and the
    /// measurement settings. Not the device, evaluation batch size or cache, which do not change what is computed.
    /// </summary>
    public static RunSettings Settings(PruneOptions options, PruneContext context, IReadOnlyList<int> candidates)
    {
        var c = CultureInfo.InvariantCulture;
        var s = options.Settings;
        var data = context.Data;
        var search = options.Search;
        var values = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["checkpoint"] = RunSettings.FileIdentity(options.Checkpoint),
            ["model"] = context.Model.Config.Name,
            ["data"] = RunSettings.DataIdentity(s.Data, data),
            ["preprocessing"] = data.Preprocessing.ToString(),
            ["validation_count"] = data.Split.ValidationCount?.ToString(c) ?? "default",
            ["split_seed"] = data.Split.Seed.ToString(c),
            ["train_limit"] = s.TrainLimit?.ToString(c) ?? "all",
            ["calibration"] = string.Create(c, $"{s.CalibrationBatches} batches of {s.CalibrationBatchSize}"),
            ["crop_padding"] = s.CropPadding.ToString(c),
            ["flip"] = s.HorizontalFlip ? "yes" : "no",
            ["blocks"] = options.Blocks == 0 ? "the fewest that fit the latency budget" : options.Blocks.ToString(c),
            ["latency_budget"] = options.LatencyLimit is { } budget
                ? string.Create(c, $"{budget} at batch {options.LatencyBatch} in {InferenceEngines.Name(options.LatencyEngine)}, " +
                    $"table {(options.LatencyTable is { } table ? Path.GetFullPath(table) : "default")}, {options.LatencyChecks} random candidates checked")
                : "none",
            ["candidates"] = string.Join(",", candidates),
            ["method"] = options.Method.ToString().ToLowerInvariant(),
            ["max_pruned"] = (options.MaxPruned ?? options.Blocks).ToString(c),
            ["supernet"] = options.SupernetCheckpoint is { } given ? RunSettings.FileIdentity(given) : "trained in this run",
            ["search"] = string.Create(c,
                $"seed {search.Seed}, population {search.Population}, generations {search.Generations}, exhaustive limit {search.EffectiveExhaustiveLimit}, validation limit {options.SearchValidationLimit?.ToString(c) ?? "none"}"),
            ["ramp"] = options.Ramp.ToString("R", c),
            ["distillation"] = StageData.Describe(options.Distillation),
            ["merge_check_images"] = options.MergeCheckImages.ToString(c),
            ["latency_runs"] = string.Create(c, $"{options.LatencyRuns} after {options.LatencyWarmup} warm-up"),
        };
        // A given supernet is not trained here, so stage 1's recipe does not define the run.
        var recipes = RunSettings.Recipe(options.Finetune, "finetune_");
        if (options.SupernetCheckpoint is null)
        {
            recipes = recipes.Concat(RunSettings.Recipe(options.Supernet, "supernet_"));
        }
        foreach (var (key, value) in recipes)
        {
            values[key] = value;
        }
        return new RunSettings(values);
    }
}
