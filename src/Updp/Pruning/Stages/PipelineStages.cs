using Updp.Checkpoints;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>
/// One step of <see cref="PrunePipeline"/>: it knows whether an earlier run finished it (its final
/// file exists in the run directory), runs on the shared <see cref="PruneContext"/>, and reads its
/// typed result back from the run directory when it is skipped.
/// </summary>
/// <typeparam name="TResult">What the stage hands to the next ones.</typeparam>
public interface IPruneStage<TResult>
{
    PruneStage Stage { get; }

    /// <summary>What the stage is about to do, for the progress report.</summary>
    string Description { get; }

    /// <summary>Whether an earlier run finished this stage in <paramref name="runDir"/>.</summary>
    bool IsDone(string runDir);

    /// <summary>Runs the stage (resuming an interrupted training stage) and writes its files to <paramref name="runDir"/>.</summary>
    TResult Run(PruneContext context, string runDir, IProgress<PruneProgress>? progress, CancellationToken cancellation);

    /// <summary>The result of a finished stage, read from <paramref name="runDir"/> and checked against this run's settings.</summary>
    TResult Load(string runDir);

    /// <summary>What a skipped stage reuses, for the progress report.</summary>
    string Reused(string runDir);

    /// <summary>The result in one line, for the progress report.</summary>
    string Summary(TResult result);
}

/// <summary>Progress relays shared by the training stages.</summary>
internal static class StageProgress
{
    public static IProgress<TrainProgress> Train(PruneStage stage, IProgress<PruneProgress>? progress) =>
        new Relay<TrainProgress>(p => progress?.Report(new PruneProgress(stage, PruneEvent.Step, Train: p)));

    public static Action<EpochResult> Epoch(PruneStage stage, IProgress<PruneProgress>? progress) =>
        e => progress?.Report(new PruneProgress(stage, PruneEvent.Epoch, Epoch: e));

    public static IProgress<SearchProgress> Search(IProgress<PruneProgress>? progress) =>
        new Relay<SearchProgress>(p => progress?.Report(new PruneProgress(PruneStage.Search, PruneEvent.Step, Search: p)));

    // Reports on the calling thread.
    private sealed class Relay<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}

/// <summary>Stage 1 in <c>supernet/</c>: <see cref="SupernetTraining"/> from the baseline.</summary>
internal sealed class SupernetStage(PruneOptions options, IReadOnlyList<int> candidates, int maxPruned) : IPruneStage<SupernetResult>
{
    public PruneStage Stage => PruneStage.Supernet;

    public string Description => $"K_max {maxPruned}, {options.Supernet.Epochs} epochs";

    public static string CheckpointPath(string runDir) =>
        Path.Combine(PrunePipeline.SupernetDir(runDir), SupernetTraining.CheckpointName + Checkpoint.WeightsExtension);

    private static string MetricsPath(string runDir) => Path.Combine(PrunePipeline.SupernetDir(runDir), PrunePipeline.MetricsFile);

    public bool IsDone(string runDir) => File.Exists(CheckpointPath(runDir)) && File.Exists(MetricsPath(runDir));

    public SupernetResult Run(PruneContext context, string runDir, IProgress<PruneProgress>? progress, CancellationToken cancellation)
    {
        var result = SupernetTraining.Run(context, new SupernetOptions
        {
            Checkpoint = options.Checkpoint,
            Settings = options.Settings,
            OutDir = PrunePipeline.SupernetDir(runDir),
            MaxPruned = maxPruned,
            Candidates = candidates,
            Space = options.Space,
            Train = options.Supernet,
            Distillation = options.Distillation,
            Resume = true,
        }, StageProgress.Train(Stage, progress), StageProgress.Epoch(Stage, progress), cancellation);
        return result with { Checkpoint = CheckpointPath(runDir) };
    }

    // The path where this run keeps it, not the one recorded (the run directory may have moved).
    public SupernetResult Load(string runDir)
    {
        var result = RunDirectory.ReadJson<SupernetResult>(MetricsPath(runDir));
        if ((result.Space == "mixed") != (options.Space == SearchSpace.Mixed))
        {
            throw new ArgumentException(
                $"'{MetricsPath(runDir)}' is a supernet of the {result.Space ?? "merge-only"} space, not of the {(options.Space == SearchSpace.Mixed ? "mixed" : "merge-only")} one " +
                "this run needs (docs/METHOD.md#mixed): use another output directory or remove it");
        }
        return result with { Checkpoint = CheckpointPath(runDir) };
    }

    public string Reused(string runDir) => $"reusing {CheckpointPath(runDir)}";

    public string Summary(SupernetResult result) => $"val top-1 {result.ValTop1:P2} with every block original";
}

/// <summary>Stage 2, <c>search.json</c>: <see cref="SubnetSearch"/> on the supernet.</summary>
internal sealed class SearchStage(PruneOptions options, string supernet, IReadOnlyList<int> candidates, LatencyBudget? latency) : IPruneStage<SearchResult>
{
    public PruneStage Stage => PruneStage.Search;

    public string Description => $"K = {options.Blocks}";

    public bool IsDone(string runDir) => File.Exists(PrunePipeline.SearchFile(runDir));

    public SearchResult Run(PruneContext context, string runDir, IProgress<PruneProgress>? progress, CancellationToken cancellation)
    {
        // Written here rather than by the search, which would lock the run directory the pipeline holds.
        var result = SubnetSearch.Run(context, new SearchOptions
        {
            Checkpoint = supernet,
            Settings = options.Settings,
            Blocks = options.Blocks,
            Space = options.Space,
            Candidates = candidates,
            Strategy = options.Search,
            ValidationLimit = options.SearchValidationLimit,
            Latency = latency,
            LatencyChecks = options.LatencyChecks,
        }, StageProgress.Search(progress), cancellation);
        RunDirectory.WriteJson(PrunePipeline.SearchFile(runDir), result);
        return result;
    }

    public SearchResult Load(string runDir)
    {
        var path = PrunePipeline.SearchFile(runDir);
        var result = RunDirectory.ReadJson<SearchResult>(path);
        if (result.PrunedBlocks != options.Blocks)
        {
            throw new ArgumentException($"'{path}' ranks subsets of {result.PrunedBlocks} blocks, not {options.Blocks}: use another output directory or remove it");
        }
        if ((result.Space == "mixed") != (options.Space == SearchSpace.Mixed))
        {
            throw new ArgumentException(
                $"'{path}' searched the {result.Space ?? "merge-only"} space, not the {(options.Space == SearchSpace.Mixed ? "mixed" : "merge-only")} one: use another output directory or remove it");
        }
        return result.Candidates.Count > 0 ? result : throw new InvalidDataException($"'{path}' lists no scored subset: remove it to search again");
    }

    public string Reused(string runDir) => $"reusing {PrunePipeline.SearchFile(runDir)}";

    public string Summary(SearchResult result)
    {
        var best = result.Candidates[0];
        var blocks = best.Forms is null ? string.Join(",", best.Blocks) : best.Assignment.ToString();
        return $"best blocks {blocks}: val top-1 {best.ValTop1:P2}";
    }
}

/// <summary>Stage 3 in <c>finetune/</c>: <see cref="ProgressiveFinetune"/> of the chosen blocks from the supernet.</summary>
internal sealed class FinetuneStage(PruneOptions options, string supernet, BlockAssignment assignment) : IPruneStage<FinetuneResult>
{
    private string Method => options.Method.ToString().ToLowerInvariant();

    private IReadOnlyList<int> Chosen => assignment.Blocks;

    private bool Mixed => options.Method == FinetuneMethod.Mixed;

    public PruneStage Stage => PruneStage.Finetune;

    public string Description => Mixed
        ? $"{Method}: {assignment}, {options.Finetune.Epochs} epochs"
        : $"{Method} on blocks {string.Join(",", Chosen)}, {options.Finetune.Epochs} epochs";

    public static string CheckpointPath(string runDir) =>
        Path.Combine(PrunePipeline.FinetuneDir(runDir), ProgressiveFinetune.CheckpointName + Checkpoint.WeightsExtension);

    private static string MetricsPath(string runDir) => Path.Combine(PrunePipeline.FinetuneDir(runDir), PrunePipeline.MetricsFile);

    public bool IsDone(string runDir) => File.Exists(CheckpointPath(runDir)) && File.Exists(MetricsPath(runDir));

    public FinetuneResult Run(PruneContext context, string runDir, IProgress<PruneProgress>? progress, CancellationToken cancellation)
    {
        var result = ProgressiveFinetune.Run(context, new FinetuneOptions
        {
            Checkpoint = supernet,
            Settings = options.Settings,
            OutDir = PrunePipeline.FinetuneDir(runDir),
            Blocks = Chosen,
            Method = options.Method,
            Dropped = Mixed ? assignment.Dropped : null,
            Init = FinetuneInit.Supernet,
            Ramp = options.Ramp,
            Train = options.Finetune,
            Distillation = options.Distillation,
            Resume = true,
            // The merge stage merges (and verifies) the fine-tuned model once.
            VerifyMerge = false,
        }, StageProgress.Train(Stage, progress), StageProgress.Epoch(Stage, progress), cancellation);
        return result with { Checkpoint = CheckpointPath(runDir) };
    }

    public FinetuneResult Load(string runDir)
    {
        var path = MetricsPath(runDir);
        var result = RunDirectory.ReadJson<FinetuneResult>(path);
        if (result.Method != Method || !result.Blocks.SequenceEqual(Chosen) || (Mixed && !result.Assignment.Equals(assignment)))
        {
            var found = result.Forms is null ? $"blocks {string.Join(",", result.Blocks)}" : result.Assignment.ToString();
            var wanted = Mixed ? assignment.ToString() : string.Join(",", Chosen);
            throw new ArgumentException(
                $"'{path}' fine-tuned {result.Method} on {found}, not {Method} on {wanted}: use another output directory or remove it");
        }
        return result with { Checkpoint = CheckpointPath(runDir) };
    }

    public string Reused(string runDir) => $"reusing {CheckpointPath(runDir)}";

    public string Summary(FinetuneResult result) => $"test top-1 {result.Top1:P2}";
}

/// <summary>What the merge stage wrote: the merged checkpoint and its verification on test images.</summary>
public sealed record MergeResult(string Checkpoint, double MaxAbsDiff, double Tolerance);

/// <summary>Stage 4, <c>merged.safetensors</c>: the fine-tuned model's pruned blocks merged, verified on test images (<see cref="Merger.MergeAll"/>).</summary>
internal sealed class MergeStage(PruneOptions options, string pruned) : IPruneStage<MergeResult>
{
    public PruneStage Stage => PruneStage.Merge;

    public string Description => "merge the pruned blocks and verify the merged model on test images";

    private static string MergedPath(string runDir) => Path.Combine(runDir, PrunePipeline.MergedFile);

    public bool IsDone(string runDir) => File.Exists(MergedPath(runDir));

    public MergeResult Run(PruneContext context, string runDir, IProgress<PruneProgress>? progress, CancellationToken cancellation)
    {
        var loaded = StageData.LoadCheckpoint(pruned, context.Settings.Device);
        using var model = loaded.Model;
        MergeReport report;
        using (NewDisposeScope())
        {
            report = Merger.MergeAll(model, CheckImages(context, options));
        }
        var metrics = new Dictionary<string, double>(loaded.Meta?.Metrics ?? new Dictionary<string, double>())
        {
            ["merge_max_abs_diff"] = report.MaxAbsDiff,
            ["merge_tolerance"] = report.Tolerance,
        };
        var merged = MergedPath(runDir);
        Checkpoint.Save(model, merged, PrunedModels.Describe(model, (loaded.Meta ?? new CheckpointMeta()) with { Metrics = metrics, Created = null }));
        return new MergeResult(merged, report.MaxAbsDiff, report.Tolerance);
    }

    public MergeResult Load(string runDir)
    {
        var merged = MergedPath(runDir);
        var meta = Checkpoint.ReadMeta(merged);
        return new MergeResult(merged, meta?.Metrics.GetValueOrDefault("merge_max_abs_diff") ?? double.NaN,
            meta?.Metrics.GetValueOrDefault("merge_tolerance") ?? double.NaN);
    }

    public string Reused(string runDir) => $"reusing {MergedPath(runDir)}";

    public string Summary(MergeResult result) => $"max |Δ| {result.MaxAbsDiff:G3} ≤ {result.Tolerance:G3}";

    /// <summary>The first <see cref="PruneOptions.MergeCheckImages"/> test images (at least one), prepared for evaluation, in the current dispose scope.</summary>
    public static List<Tensor> CheckImages(PruneContext context, PruneOptions options) =>
        TrainingRun.EvalLoader(context.Data.Splits.Test.Take(Math.Max(options.MergeCheckImages, 1)), context.Data.Preprocessing, 128)
            .Epoch(0).Select(b => b.Images).ToList();
}

/// <summary>
/// Not a stage of the method: baseline and merged model measured side by side (<see cref="PruneMeasurement"/>),
/// written to <c>metrics.json</c>, <c>report.md</c> and <c>model.onnx</c>.
/// </summary>
internal sealed class MeasureStage(PruneOptions options, SearchResult search, FinetuneResult finetune, MergeResult merge, LatencyBudget? latency)
    : IPruneStage<PruneMetrics>
{
    public PruneStage Stage => PruneStage.Measure;

    public string Description => "evaluate the baseline, export ONNX, time both models";

    public bool IsDone(string runDir) => Finished(runDir);

    /// <summary>Whether the measurements, the pipeline's last step, are written: the whole run is finished.</summary>
    public static bool Finished(string runDir)
    {
        var metrics = Path.Combine(runDir, PrunePipeline.MetricsFile);
        return File.Exists(metrics) && File.Exists(Path.Combine(runDir, PrunePipeline.ReportFile))
            && (File.Exists(Path.Combine(runDir, PrunePipeline.OnnxFile)) || RunDirectory.ReadJson<PruneMetrics>(metrics).OnnxSkipped is not null);
    }

    public PruneMetrics Run(PruneContext context, string runDir, IProgress<PruneProgress>? progress, CancellationToken cancellation)
    {
        var metrics = PruneMeasurement.Measure(context, options, search, finetune, merge, latency);
        RunDirectory.WriteJson(Path.Combine(runDir, PrunePipeline.MetricsFile), metrics);
        AtomicFile.WriteAllText(Path.Combine(runDir, PrunePipeline.ReportFile), PruneMeasurement.RenderReport(options, metrics));
        return metrics;
    }

    public PruneMetrics Load(string runDir) => RunDirectory.ReadJson<PruneMetrics>(Path.Combine(runDir, PrunePipeline.MetricsFile));

    public string Reused(string runDir) => $"reusing {Path.Combine(runDir, PrunePipeline.MetricsFile)}";

    public string Summary(PruneMetrics result) => $"speed-up {result.Speedup:F2}× at batch 1";
}
