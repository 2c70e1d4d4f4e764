using System.Diagnostics;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>What stage 1, supernet training, needs (<c>updp supernet</c>).</summary>
public sealed record SupernetOptions
{
    /// <summary>The baseline: an Updp checkpoint whose candidate blocks are original (or already pruned).</summary>
    public required string Checkpoint { get; init; }

    /// <summary>Data, split, calibration and evaluation settings shared with the other stages.</summary>
    public required StageSettings Settings { get; init; }

    /// <summary>The run directory: <c>supernet.safetensors</c> (+ sidecar), <c>metrics.json</c>, resume state.</summary>
    public required string OutDir { get; init; }

    /// <summary>K_max: each step prunes between 0 and this many candidate blocks.</summary>
    public required int MaxPruned { get; init; }

    /// <summary>The blocks that may be pruned (global indices); null for all of the model's blocks.</summary>
    public IReadOnlyList<int>? Candidates { get; init; }

    /// <summary>
    /// What a step does to its drawn blocks: <see cref="SearchSpace.Merge"/> runs them pruned at λ=1;
    /// <see cref="SearchSpace.Mixed"/> drops each one its rule allows to drop with probability ½ (docs/METHOD.md#mixed).
    /// </summary>
    public SearchSpace Space { get; init; } = SearchSpace.Merge;

    /// <summary>The recipe; <see cref="TrainOptions.Seed"/> also seeds the per-step subsets and the calibration batches.</summary>
    public TrainOptions Train { get; init; } = new() { Epochs = 3, LearningRate = FinetuneOptions.FineTuningLearningRate };

    /// <summary>Distillation from a teacher (usually the baseline itself); null trains on the labels alone.</summary>
    public DistillationOptions? Distillation { get; init; }

    /// <summary>Continue an interrupted run found in <see cref="OutDir"/>.</summary>
    public bool Resume { get; init; }

    /// <summary>Replace a run found in <see cref="OutDir"/> instead of refusing to.</summary>
    public bool Force { get; init; }
}

/// <summary>What supernet training produced; also written to <c>metrics.json</c>.</summary>
public sealed record SupernetResult
{
    /// <summary>The supernet: every candidate block in progressive form, λ=0 stored.</summary>
    public required string Checkpoint { get; init; }

    public required string Model { get; init; }

    /// <summary>The candidate blocks.</summary>
    public required IReadOnlyList<int> Blocks { get; init; }

    public int MaxPruned { get; init; }

    /// <summary><c>mixed</c> for a supernet of the mixed space (docs/METHOD.md#mixed); null (not written) for the merge-only one.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? Space { get; init; }

    /// <summary>The candidates a mixed supernet's steps may drop; null for the merge-only one.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? Droppable { get; init; }

    /// <summary>Validation top-1 of the final supernet with every block at λ=0 (the original network on the supernet's weights).</summary>
    public double ValTop1 { get; init; }

    public int Epochs { get; init; }

    public double TrainSeconds { get; init; }

    public int BatchSize { get; init; }

    public double LearningRate { get; init; }

    public int Seed { get; init; }

    public int TrainImages { get; init; }

    public required ValidationSplit Split { get; init; }

    /// <summary>Batch norms calibrated before training.</summary>
    public int CalibratedNorms { get; init; }

    public DistillationOptions? Distillation { get; init; }

    public IReadOnlyList<EpochResult> History { get; init; } = [];
}

/// <summary>
/// Stage 1 of the method (docs/METHOD.md#stage-1-supernet-training): from the baseline's weights, trains one set of weights that
/// works with any subset of at most K_max candidate blocks pruned. Every candidate block gets its
/// progressive form; each step samples a subset S (<see cref="SupernetSampler"/>) whose blocks run
/// at λ=1 while the others run at λ=0, i.e. as the original blocks.
/// </summary>
public static class SupernetTraining
{
    /// <summary>Base name of the supernet checkpoint in the run directory.</summary>
    public const string CheckpointName = "supernet";

    /// <summary>
    /// Loads the baseline, prunes every candidate block (λ=0), calibrates the new batch norms, trains
    /// the supernet and saves it (the final epoch's weights, every candidate at λ=0) as
    /// <c>OutDir/supernet.safetensors</c>. Validation after each epoch runs with every block at λ=0;
    /// the test set is not used.
    /// </summary>
    public static SupernetResult Run(SupernetOptions options, IProgress<TrainProgress>? progress = null,
        Action<EpochResult>? epochDone = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var context = PruneContext.Open(options.Checkpoint, options.Settings, options.Train.Seed);
        return Run(context, options, progress, epochDone, cancellation);
    }

    /// <summary>Stage 1 on a loaded context whose checkpoint is the baseline (<paramref name="options"/>' checkpoint and settings are the context's).</summary>
    public static SupernetResult Run(PruneContext context, SupernetOptions options, IProgress<TrainProgress>? progress = null,
        Action<EpochResult>? epochDone = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(options);
        using var model = context.CopyModel();
        var candidates = StageData.CheckBlocks(model, options.Candidates ?? model.Blocks.Select(b => b.Index), "the supernet's candidate blocks");
        StageData.RequireUnmerged(model, candidates, options.Checkpoint);
        var mixed = options.Space == SearchSpace.Mixed;
        // The rules say which blocks may be dropped (docs/METHOD.md#which-blocks-can-be-dropped); a step drops only those.
        int[] droppable = mixed ? [.. BlockAssignment.Droppable(model, candidates).Order()] : [];
        var sampler = new SupernetSampler(candidates, options.MaxPruned, options.Train.Seed, droppable);
        var data = context.TrainingData;
        var runOptions = StageData.RunOptions(model, context.Settings, options.OutDir, data, options.Train, options.Resume, options.Force);
        var calibrated = Prepare(model, candidates, context.CalibrationImages(options.Train.Seed));

        var teacher = options.Distillation is { } distill ? context.Teacher(distill, model) : null;
        var none = new HashSet<int>();
        var forms = mixed ? new AssignmentForms(model, candidates, droppable) : null;
        var original = BlockAssignment.MergeOnly([]);
        // Held until metrics.json, which marks the stage finished, is written; taken once the input is checked.
        TrainingRun.Check(runOptions, data);
        using var runLock = RunLock.Acquire(options.OutDir, "updp supernet");
        var hooks = new TrainRunHooks
        {
            Lock = runLock,
            Loss = teacher?.Loss(options.Distillation!, options.Train.LabelSmoothing),
            BeforeStep = forms is null
                ? (step, _) => StageData.SetLambdas(model, candidates, sampler.Sample(step).ToHashSet())
                : (step, _) => forms.Apply(sampler.SampleAssignment(step)),
            // Validation and the saved supernet: every candidate pruned at λ=0, none swapped out.
            BeforeEvaluate = forms is null
                ? (_, _) => StageData.SetLambdas(model, candidates, none)
                : (_, _) => forms.Apply(original),
            // The supernet is the final epoch's weights: a validation score at λ=0 does not rank supernets.
            CanBeBest = epoch => epoch == options.Train.Epochs,
            CheckpointName = CheckpointName,
            EvaluateTest = false,
            Settings = RunSettings(context, options, candidates),
        };
        var clock = Stopwatch.StartNew();
        TrainRunResult run;
        try
        {
            run = TrainingRun.Run(runOptions, data, model, hooks, progress, epochDone, cancellation);
        }
        finally
        {
            // A step that failed or was cancelled may have left a block swapped out; the model owns its pruned module again.
            forms?.Restore();
        }
        var result = Result(options, run, model, candidates, droppable, data, calibrated);
        RunDirectory.WriteJson(Path.Combine(options.OutDir, "metrics.json"), result);
        return result;
    }

    // What defines a supernet run (OUT/run.json): a resume with other values is refused.
    private static Dictionary<string, string> RunSettings(PruneContext context, SupernetOptions options, IReadOnlyList<int> candidates)
    {
        var settings = new Dictionary<string, string>
        {
            ["stage"] = "supernet",
            ["baseline"] = Path.GetFullPath(context.Checkpoint),
            ["candidates"] = string.Join(",", candidates),
            ["max_pruned"] = options.MaxPruned.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["distillation"] = StageData.Describe(options.Distillation),
        };
        if (options.Space == SearchSpace.Mixed)
        {
            // Only then: a merge-only run keeps the settings (and run.json) it always had, so it resumes as before.
            settings["space"] = "mixed";
        }
        return settings;
    }

    private static SupernetResult Result(SupernetOptions options, TrainRunResult run, ImageClassifier model, int[] candidates, int[] droppable,
        RunData data, int calibrated)
    {
        var mixed = options.Space == SearchSpace.Mixed;
        var state = run.State;
        return new SupernetResult
        {
            Checkpoint = run.BestCheckpoint,
            Model = model.Config.Name,
            Blocks = candidates,
            MaxPruned = options.MaxPruned,
            Space = mixed ? "mixed" : null,
            Droppable = mixed ? droppable : null,
            ValTop1 = state.History[^1].ValTop1,
            Epochs = state.EpochsDone,
            TrainSeconds = state.TrainSeconds,
            BatchSize = options.Train.BatchSize,
            LearningRate = options.Train.LearningRate,
            Seed = options.Train.Seed,
            TrainImages = data.Splits.Train.Count,
            Split = data.Split,
            CalibratedNorms = calibrated,
            Distillation = options.Distillation,
            History = state.History,
        };
    }

    /// <summary>
    /// Turns <paramref name="model"/> into an untrained supernet: prunes every block of
    /// <paramref name="candidates"/> and calibrates each new batch norm on <paramref name="images"/>
    /// with only its own block at λ=1, so that it sees the features the original network gives it
    /// (where its LayerNorm was); then sets every candidate to λ=0.
    /// </summary>
    /// <returns>The number of batch norms calibrated.</returns>
    public static int Prepare(ImageClassifier model, IReadOnlyList<int> candidates, IReadOnlyList<Tensor> images)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentNullException.ThrowIfNull(images);
        var none = new HashSet<int>();
        StageData.SetLambdas(model, candidates, none);
        var calibrated = 0;
        foreach (var index in candidates)
        {
            var block = model.Prune(index);
            block.Lambda = 1;
            calibrated += BatchNormCalibration.Recalibrate(model, images, block.BatchNorms);
            block.Lambda = 0;
        }
        return calibrated;
    }
}
