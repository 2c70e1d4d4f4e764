using System.Globalization;
using System.Text;
using System.Text.Json;
using Updp.Benchmarks;
using Updp.Checkpoints;
using Updp.Export;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>What <see cref="PrunePipeline"/> needs (<c>updp prune</c>): the four stages' settings in one place.</summary>
public sealed record PruneOptions
{
    /// <summary>The baseline (an Updp checkpoint with sidecar, every block original).</summary>
    public required string Checkpoint { get; init; }

    /// <summary>Data, split, calibration and evaluation settings, the same for every stage.</summary>
    public required StageSettings Settings { get; init; }

    /// <summary>The run directory; see <see cref="PrunePipeline"/> for its layout.</summary>
    public required string OutDir { get; init; }

    /// <summary>K: how many blocks the pruned model loses; 0 with <see cref="LatencyLimit"/>: the fewest that can fit it.</summary>
    public required int Blocks { get; init; }

    /// <summary>
    /// A latency budget (ms per batch of <see cref="LatencyBatch"/>, or a percentage of the unpruned
    /// model's measured time): the search scores only subsets predicted to fit it by this machine's
    /// per-block latency table on <see cref="LatencyEngine"/>; the chosen model and a few others are
    /// timed whole to check the prediction, and the merged model is timed again.
    /// </summary>
    public LatencyLimit? LatencyLimit { get; init; }

    public int LatencyBatch { get; init; } = 1;

    /// <summary>The per-block latency table file; null for <see cref="Benchmarks.BlockLatencyTable.DefaultPath"/>.</summary>
    public string? LatencyTable { get; init; }

    /// <summary>
    /// The engine the latency budget is for: the table, the prediction's check and the merged model's
    /// time; by default ONNX Runtime, which runs the exported <c>model.onnx</c> (docs/METHOD.md#latency-budget).
    /// </summary>
    public InferenceEngine LatencyEngine { get; init; } = InferenceEngine.OnnxRuntime;

    /// <summary>How many scored candidates besides the chosen one are timed whole to check the prediction (<see cref="SearchOptions.LatencyChecks"/>).</summary>
    public int LatencyChecks { get; init; } = SearchOptions.DefaultLatencyChecks;

    /// <summary>
    /// How stage 3 prunes the chosen blocks; <see cref="FinetuneMethod.Mixed"/> also trains the
    /// supernet for, and searches, the mixed space (docs/METHOD.md#mixed).
    /// </summary>
    public FinetuneMethod Method { get; init; } = FinetuneMethod.Updp;

    /// <summary>The space stages 1 and 2 work in: mixed for <see cref="FinetuneMethod.Mixed"/>, merge-only otherwise.</summary>
    public SearchSpace Space => Method == FinetuneMethod.Mixed ? SearchSpace.Mixed : SearchSpace.Merge;

    /// <summary>K_max of the supernet; null for K.</summary>
    public int? MaxPruned { get; init; }

    /// <summary>
    /// A supernet trained before (stage 1's <c>supernet.safetensors</c>, e.g. of another run with a
    /// larger K_max) to search and fine-tune from; stage 1 is then skipped. Null trains one in OutDir.
    /// </summary>
    public string? SupernetCheckpoint { get; init; }

    /// <summary>The blocks that may be pruned; null for all.</summary>
    public IReadOnlyList<int>? Candidates { get; init; }

    /// <summary>Stage 1's recipe; its seed also seeds the search and stage 3 unless they say otherwise.</summary>
    public TrainOptions Supernet { get; init; } = new() { Epochs = 3, LearningRate = FinetuneOptions.FineTuningLearningRate };

    public SearchStrategy Search { get; init; } = new();

    /// <summary>Score subsets on the first N validation images only; null for the whole split.</summary>
    public int? SearchValidationLimit { get; init; }

    /// <summary>Stage 3's recipe.</summary>
    public TrainOptions Finetune { get; init; } = FinetuneOptions.DefaultRecipe;

    /// <summary>λ ramp fraction of stage 3 (<see cref="FinetuneMethod.Updp"/>).</summary>
    public double Ramp { get; init; } = LambdaRamp.DefaultRamp;

    /// <summary>Distillation in stages 1 and 3; null for none.</summary>
    public DistillationOptions? Distillation { get; init; }

    /// <summary>Real test images the merge is verified on (plus one random batch).</summary>
    public int MergeCheckImages { get; init; } = 256;

    /// <summary>Timed forward passes per latency measurement (after <see cref="LatencyWarmup"/> untimed ones).</summary>
    public int LatencyRuns { get; init; } = 20;

    public int LatencyWarmup { get; init; } = 3;

    /// <summary>
    /// Report a finished run found in <see cref="OutDir"/> again (every stage skipped) instead of
    /// refusing it; an interrupted run with the same settings is continued either way.
    /// </summary>
    public bool Resume { get; init; }

    /// <summary>Delete a run found in <see cref="OutDir"/> (finished or not, whatever its settings) and start over.</summary>
    public bool Force { get; init; }
}

/// <summary>The four stages, in order.</summary>
public enum PruneStage
{
    Supernet,
    Search,
    Finetune,
    Merge,

    /// <summary>Not a stage of the method: test top-1, costs, ONNX export and latency of baseline and merged model, and the report.</summary>
    Measure,
}

/// <summary>What a progress report says.</summary>
public enum PruneEvent
{
    /// <summary>The stage starts (or resumes).</summary>
    Started,

    /// <summary>The stage had finished in an earlier run; its output is reused.</summary>
    Skipped,

    /// <summary>A training step (<see cref="PruneProgress.Train"/>) or a scored subset (<see cref="PruneProgress.Search"/>).</summary>
    Step,

    /// <summary>A training epoch ended (<see cref="PruneProgress.Epoch"/>).</summary>
    Epoch,

    Finished,
}

/// <summary>One progress report of <see cref="PrunePipeline.Run"/>; <see cref="Message"/> describes Started, Skipped and Finished.</summary>
public sealed record PruneProgress(PruneStage Stage, PruneEvent Event, string? Message = null,
    TrainProgress? Train = null, SearchProgress? Search = null, EpochResult? Epoch = null);

/// <summary>What <see cref="PrunePipeline.Run"/> did.</summary>
/// <param name="Skipped">Stages that had finished in an earlier run and were not run again.</param>
public sealed record PruneResult(PruneMetrics Metrics, IReadOnlyList<PruneStage> Skipped);

/// <summary>
/// The whole method (docs/METHOD.md#the-four-stages) in one run directory: supernet → search → fine-tune → merge, then
/// test top-1, costs and latency of baseline and merged model. Layout of OutDir:
/// <c>supernet/</c> (stage 1, <c>supernet.safetensors</c>), <c>search.json</c> (stage 2),
/// <c>finetune/</c> (stage 3, <c>pruned.safetensors</c>), <c>merged.safetensors</c> (stage 4),
/// <c>model.onnx</c> (the merged model, checked in ONNX Runtime), <c>metrics.json</c> and <c>report.md</c>
/// (and, drawn by the command line, the figures the report shows: <see cref="FrontierFigure"/>,
/// <see cref="BlockLatencyFigure"/>, <see cref="TrainingFigure"/>, with <see cref="LatencyTableFile"/>).
/// The baseline, the data, the calibration images and the teacher are loaded once (<see cref="PruneContext"/>);
/// each stage (<see cref="IPruneStage{TResult}"/>) hands its typed result to the next. Every file is
/// written atomically and a stage counts as finished when its final file exists (training stages:
/// their <c>metrics.json</c>, written last), so running again after an interruption skips the
/// finished stages and resumes an interrupted training stage from its last epoch. The directory is
/// locked while the pipeline runs and <c>run.json</c> records the settings that define the run
/// (<see cref="PruneRun"/>): finished stages are reused only by a run with the same settings.
/// </summary>
public static class PrunePipeline
{
    public const string MetricsFile = "metrics.json";
    public const string ReportFile = "report.md";
    public const string MergedFile = "merged.safetensors";
    public const string OnnxFile = "model.onnx";

    /// <summary>Every file a prune run writes in <paramref name="outDir"/> (and <c>--force</c> deletes), existing or not.</summary>
    public static IEnumerable<string> RunFiles(string outDir) => PruneRun.Files(outDir);

    /// <summary>The figures <c>updp prune</c>, <c>search</c> and <c>report</c> draw next to report.md (the library does not draw them).</summary>
    public const string FrontierFigure = "frontier.png";

    public const string BlockLatencyFigure = "block_latency.png";

    public const string TrainingFigure = "training.png";

    /// <summary>A run without a latency budget keeps the per-block latency table its figures use here.</summary>
    public const string LatencyTableFile = "latency_table.json";

    public static string SupernetDir(string outDir) => Path.Combine(outDir, "supernet");

    public static string SearchFile(string outDir) => Path.Combine(outDir, SubnetSearch.ResultFile);

    public static string FinetuneDir(string outDir) => Path.Combine(outDir, "finetune");

    public static PruneResult Run(PruneOptions options, IProgress<PruneProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var outDir = options.OutDir;
        using var context = PruneContext.Open(options.Checkpoint, options.Settings, options.Supernet.Seed);
        var candidates = Check(context, options);
        // Held until the report is written: a second process would skip or redo this one's stages.
        using var run = PruneRun.Open(options, context, candidates);
        LatencyBudget? latency = null;
        if (options.LatencyLimit is { } limit)
        {
            latency = LatencyBudget.Create(context.Model.Config, context.Data.Preprocessing.InputSize, limit, options.LatencyBatch, options.LatencyTable, out var measured,
                options.Settings.Device, options.Space, options.LatencyEngine);
            progress?.Report(new PruneProgress(PruneStage.Search, PruneEvent.Started,
                $"{(measured ? "measured" : "reused")} the {latency.Table.Engine} latency table {latency.TablePath}: unpruned {latency.Table.ModelMs:F2} ms at batch {options.LatencyBatch}, " +
                $"budget {latency.BudgetMs:F2} ms{(limit.IsPercent ? $" ({limit})" : "")}"));
            if (options.Blocks == 0)
            {
                options = options with { Blocks = latency.FewestBlocks(candidates, options.Space) };
            }
        }
        var skipped = new List<PruneStage>();
        T Step<T>(IPruneStage<T> stage)
        {
            T result;
            if (stage.IsDone(outDir))
            {
                skipped.Add(stage.Stage);
                progress?.Report(new PruneProgress(stage.Stage, PruneEvent.Skipped, stage.Reused(outDir)));
                result = stage.Load(outDir);
            }
            else
            {
                progress?.Report(new PruneProgress(stage.Stage, PruneEvent.Started, stage.Description));
                result = stage.Run(context, outDir, progress, cancellation);
            }
            progress?.Report(new PruneProgress(stage.Stage, PruneEvent.Finished, stage.Summary(result)));
            return result;
        }

        var supernet = options.SupernetCheckpoint;
        if (supernet is not null)
        {
            skipped.Add(PruneStage.Supernet);
            progress?.Report(new PruneProgress(PruneStage.Supernet, PruneEvent.Skipped, $"using the given supernet {supernet}"));
        }
        else
        {
            supernet = Step(new SupernetStage(options, candidates, options.MaxPruned ?? options.Blocks)).Checkpoint;
        }
        var search = Step(new SearchStage(options, supernet, candidates, latency));
        var finetune = Step(new FinetuneStage(options, supernet, search.Candidates[0].Assignment));
        var merged = Step(new MergeStage(options, finetune.Checkpoint));
        var metrics = Step(new MeasureStage(options, search, finetune, merged, latency));
        run.Finished();
        return new PruneResult(metrics, skipped);
    }

    // Fails on bad input before any stage runs (and before anything is written); returns the candidate blocks.
    private static int[] Check(PruneContext context, PruneOptions options)
    {
        var model = context.Model;
        // The drop comparison can only remove blocks that keep the shape of their input.
        var droppable = model.Blocks.Select(b => b.Index).Where(i => options.Method != FinetuneMethod.Drop || model.CannotDrop(i) is null);
        var candidates = StageData.CheckBlocks(model, options.Candidates ?? droppable, "the candidate blocks");
        if (options.Method == FinetuneMethod.Drop && candidates.Select(i => (Index: i, Reason: model.CannotDrop(i))).FirstOrDefault(c => c.Reason is not null) is { Reason: { } reason } c)
        {
            throw new ArgumentException($"method drop: candidate {BlockPruning.Describe(model.Blocks[c.Index])} cannot be dropped: {reason}");
        }
        if ((options.Blocks < 1 && !(options.Blocks == 0 && options.LatencyLimit is not null)) || options.Blocks > candidates.Length)
        {
            throw new ArgumentException(
                $"K = {options.Blocks} blocks to prune: expected 1–{candidates.Length}, the number of candidate blocks of '{options.Checkpoint}'");
        }
        if (options.MaxPruned is int kMax && (kMax < options.Blocks || kMax > candidates.Length))
        {
            throw new ArgumentException($"K_max = {kMax}: expected {options.Blocks}–{candidates.Length} (at least K, at most the candidate blocks)");
        }
        if (model.PrunedBlocks().Any() || model.Blocks.Any(b => model.FormOf(b.Index) != BlockForm.Original))
        {
            throw new ArgumentException($"'{options.Checkpoint}' has pruned, merged or dropped blocks; the pipeline starts from a baseline");
        }
        if (options.SupernetCheckpoint is { } given)
        {
            var supernet = StageData.LoadCheckpoint(given);
            using var supernetModel = supernet.Model;
            if (supernetModel.Config != model.Config || !supernetModel.PrunedBlocks().Any())
            {
                throw new ArgumentException($"supernet '{given}': expected a supernet of the baseline's model ({model.Config.Name}) with blocks in progressive form");
            }
            // A merge-only supernet never trained the dropped forms the mixed search would score.
            var metrics = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(given))!, "metrics.json");
            if (options.Space == SearchSpace.Mixed && File.Exists(metrics)
                && RunDirectory.ReadJson<SupernetResult>(metrics) is { Space: not "mixed" })
            {
                throw new ArgumentException(
                    $"supernet '{given}' was trained for merging only ({metrics} has no \"space\": \"mixed\"); --method mixed needs `updp supernet --method mixed`");
            }
        }
        ArgumentOutOfRangeException.ThrowIfNegative(options.MergeCheckImages, nameof(options.MergeCheckImages));
        ArgumentOutOfRangeException.ThrowIfNegative(options.LatencyChecks, nameof(options.LatencyChecks));
        _ = context.Meta?.Preprocessing?.InputSize
            ?? throw new ArgumentException($"'{options.Checkpoint}' has no preprocessing in its sidecar; the pipeline needs a checkpoint written by `updp train`");
        return candidates;
    }
}
