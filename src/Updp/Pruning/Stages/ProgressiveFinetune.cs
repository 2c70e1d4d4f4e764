using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>How stage 3 turns the chosen blocks into their pruned form (docs/METHOD.md#comparison-methods).</summary>
public enum FinetuneMethod
{
    /// <summary>UPDP: the blocks' progressive form, λ rising linearly from 0 to 1 over the first part of training.</summary>
    Updp,

    /// <summary>λ=1 from the first step: activations and LayerNorms removed at once (DepthShrinker-style).</summary>
    Direct,

    /// <summary>The blocks removed entirely (identity), then fine-tuned: classic block dropping.</summary>
    Drop,

    /// <summary>
    /// Some blocks merged, some dropped (docs/METHOD.md#mixed): the merged ones as <see cref="Updp"/>,
    /// the dropped ones by a progressive drop over the same λ ramp (their residual branch fades out).
    /// </summary>
    Mixed,
}

/// <summary>Which kind of checkpoint stage 3 starts from (docs/METHOD.md#stage-3-progressive-fine-tuning, <c>--init</c>).</summary>
public enum FinetuneInit
{
    /// <summary>Stage 1's supernet: the checkpoint has blocks in progressive form.</summary>
    Supernet,

    /// <summary>The baseline: no block is pruned.</summary>
    Baseline,
}

/// <summary>What stage 3, progressive subnet training, needs (<c>updp finetune</c>).</summary>
public sealed record FinetuneOptions
{
    /// <summary>
    /// The default stage-3 recipe: a quarter of the 12-epoch baseline's epochs at
    /// <see cref="FineTuningLearningRate"/> (fine-tuning starts from trained weights).
    /// </summary>
    public static TrainOptions DefaultRecipe => new() { Epochs = 3, LearningRate = FineTuningLearningRate };

    /// <summary>
    /// Peak learning rate of stages 1 and 3, which start from trained weights: a twentieth of the
    /// demo baseline's 4e-3. Measured at K=2 on Fashion-MNIST (1-epoch supernet and fine-tune,
    /// docs/RESULTS.md): 2e-4 for both ended 0.5 points above 1e-3 (89.85 % against 89.34 %).
    /// </summary>
    public const double FineTuningLearningRate = 2e-4;

    /// <summary>
    /// The initial weights: the supernet (every block in progressive form) or the baseline. Every
    /// method of a comparison should start from the same checkpoint.
    /// </summary>
    public required string Checkpoint { get; init; }

    /// <summary>Data, split, calibration and evaluation settings shared with the other stages.</summary>
    public required StageSettings Settings { get; init; }

    /// <summary>The run directory: <c>pruned.safetensors</c> (+ sidecar), <c>metrics.json</c>, resume state.</summary>
    public required string OutDir { get; init; }

    /// <summary>S: the blocks to prune (or drop).</summary>
    public required IReadOnlyList<int> Blocks { get; init; }

    public FinetuneMethod Method { get; init; } = FinetuneMethod.Updp;

    /// <summary>
    /// <see cref="FinetuneMethod.Mixed"/> only: the blocks of <see cref="Blocks"/> that are dropped
    /// (progressively); the others are merged. Null or empty: none.
    /// </summary>
    public IReadOnlyList<int>? Dropped { get; init; }

    /// <summary>
    /// The kind of checkpoint <see cref="Checkpoint"/> must be; null accepts either. A mismatch is an
    /// error, so that a comparison does not silently start one method from the wrong weights.
    /// </summary>
    public FinetuneInit? Init { get; init; }

    /// <summary>The fraction of training over which λ rises from 0 to 1 (<see cref="FinetuneMethod.Updp"/> and <see cref="FinetuneMethod.Mixed"/>).</summary>
    public double Ramp { get; init; } = LambdaRamp.DefaultRamp;

    /// <summary>The recipe; the same for every method of a comparison (data order and augmentation follow its seed).</summary>
    public TrainOptions Train { get; init; } = DefaultRecipe;

    /// <summary>Distillation from a teacher (usually the baseline); null trains on the labels alone.</summary>
    public DistillationOptions? Distillation { get; init; }

    /// <summary>
    /// Merge a copy of the fine-tuned model (verified on validation images) to report its merged
    /// cost and merge error; the pipeline, which merges once in its own stage, turns it off and
    /// reports the cost from the structure alone (<see cref="MergedCosts"/>).
    /// </summary>
    public bool VerifyMerge { get; init; } = true;

    /// <summary>Continue an interrupted run found in <see cref="OutDir"/>.</summary>
    public bool Resume { get; init; }

    /// <summary>Replace a run found in <see cref="OutDir"/> instead of refusing to.</summary>
    public bool Force { get; init; }
}

/// <summary>
/// What fine-tuning produced; written to <c>metrics.json</c> with the keys of
/// <see cref="TrainMetrics"/> (its <c>params</c> and <c>macs</c> are the merged model's here).
/// </summary>
public sealed record FinetuneResult
{
    public required string Model { get; init; }

    /// <summary><c>updp</c>, <c>direct</c>, <c>drop</c> or <c>mixed</c>.</summary>
    public required string Method { get; init; }

    /// <summary>S, ascending.</summary>
    public required IReadOnlyList<int> Blocks { get; init; }

    /// <summary>
    /// <c>mixed</c> only: each block's form, <c>merge</c> or <c>drop</c> (<see cref="BlockAssignment.Forms"/>);
    /// null (not written) for the other methods.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<int, string>? Forms { get; init; }

    /// <summary>S with the forms its blocks take: all merged (<c>updp</c>, <c>direct</c>), all dropped (<c>drop</c>), or as <see cref="Forms"/> says.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public BlockAssignment Assignment => Method == "drop" ? new BlockAssignment([], Blocks) : BlockAssignment.FromForms(Blocks, Forms);

    public required string InitCheckpoint { get; init; }

    /// <summary><c>supernet</c> when the initial checkpoint had blocks in progressive form, else <c>baseline</c>.</summary>
    public required string Init { get; init; }

    /// <summary>The λ ramp fraction (0 for <c>direct</c>; not applicable to <c>drop</c>).</summary>
    public double Ramp { get; init; }

    public DistillationOptions? Distillation { get; init; }

    /// <summary>The fine-tuned model: best validation top-1 among epochs that ended with every pruned block at λ=1.</summary>
    public required string Checkpoint { get; init; }

    /// <summary>Test top-1 of that model, measured once.</summary>
    public double Top1 { get; init; }

    public double TestLoss { get; init; }

    public double ValTop1 { get; init; }

    public int BestEpoch { get; init; }

    /// <summary>Parameters after merging the pruned blocks (what is deployed).</summary>
    public long Params { get; init; }

    /// <summary>MACs after merging the pruned blocks.</summary>
    public long Macs { get; init; }

    /// <summary>The unpruned model's cost, for speed-up ratios.</summary>
    public required ModelCost Original { get; init; }

    /// <summary>The verified merge's largest output difference (<see cref="MergeReport.MaxAbsDiff"/>); null when the merge was left to a later stage.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public double? MergeMaxAbsDiff { get; init; }

    public int Epochs { get; init; }

    public double TrainSeconds { get; init; }

    public int InputSize { get; init; }

    public int BatchSize { get; init; }

    public double LearningRate { get; init; }

    public int Seed { get; init; }

    public int TrainImages { get; init; }

    public required ValidationSplit Split { get; init; }

    public IReadOnlyList<EpochResult> History { get; init; } = [];
}

/// <summary>
/// Stage 3 of the method (docs/METHOD.md#stage-3-progressive-fine-tuning): trains the subnet that prunes blocks S. With
/// <see cref="FinetuneMethod.Updp"/> the blocks of S take their progressive form and λ rises
/// linearly per step from 0 to 1 over the first <see cref="FinetuneOptions.Ramp"/> of training (then
/// stays 1); <see cref="FinetuneMethod.Direct"/> starts at λ=1; <see cref="FinetuneMethod.Drop"/>
/// removes the blocks; <see cref="FinetuneMethod.Mixed"/> ramps the merged blocks as UPDP does and
/// fades the dropped ones out over the same ramp. Every other block runs in its original form. All methods start from the
/// same checkpoint and train on the same data, for the same steps, with the same seed; the pruned
/// blocks' batch norms are calibrated at λ=1 on training batches first.
/// </summary>
public static class ProgressiveFinetune
{
    /// <summary>Base name of the fine-tuned checkpoint in the run directory.</summary>
    public const string CheckpointName = "pruned";

    /// <summary>
    /// Fine-tunes, saves the best eligible epoch as <c>OutDir/pruned.safetensors</c> (S at λ=1, ready
    /// for merging), evaluates it once on the test set, merges a copy (verified) for its cost, and
    /// writes <c>metrics.json</c>.
    /// </summary>
    public static FinetuneResult Run(FinetuneOptions options, IProgress<TrainProgress>? progress = null,
        Action<EpochResult>? epochDone = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var context = PruneContext.Open(options.Checkpoint, options.Settings, options.Train.Seed);
        return Run(context, options, progress, epochDone, cancellation);
    }

    /// <summary>
    /// Stage 3 on a loaded context (data, split, calibration images and teacher are the context's);
    /// the initial weights are <paramref name="options"/>' checkpoint, the context's own or one of the same model.
    /// </summary>
    public static FinetuneResult Run(PruneContext context, FinetuneOptions options, IProgress<TrainProgress>? progress = null,
        Action<EpochResult>? epochDone = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Blocks);
        var ramp = RampOf(options);
        using var model = context.ModelOf(options.Checkpoint);
        var init = CheckInit(model, options);
        var blocks = StageData.CheckBlocks(model, options.Blocks, "the blocks to prune");
        var assignment = Assignment(blocks, options);
        var data = context.TrainingData;
        var runOptions = StageData.RunOptions(model, context.Settings, options.OutDir, data, options.Train, options.Resume, options.Force);

        var (pruned, fading) = PrepareBlocks(context, model, blocks, assignment, options);

        var teacher = options.Distillation is { } distill ? context.Teacher(distill, model) : null;
        // Held until metrics.json, which marks the stage finished, is written; taken once the input is checked.
        TrainingRun.Check(runOptions, data);
        using var runLock = RunLock.Acquire(options.OutDir, "updp finetune");
        var lambda = 0.0;
        void SetLambda(long step, long total)
        {
            lambda = new LambdaRamp(ramp, total).At(step);
            foreach (var p in pruned)
            {
                p.Lambda = lambda;
            }
            // The progressive drop follows the same ramp (docs/METHOD.md#progressive-drop).
            foreach (var f in fading)
            {
                f.Lambda = lambda;
            }
        }
        var hooks = new TrainRunHooks
        {
            Lock = runLock,
            Loss = teacher?.Loss(options.Distillation!, options.Train.LabelSmoothing),
            BeforeStep = SetLambda,
            BeforeEvaluate = SetLambda,
            // A model saved mid-ramp would not be the pruned model; the last epoch always qualifies.
            CanBeBest = _ => lambda == 1,
            CheckpointName = CheckpointName,
            WriteMetrics = false,
            Settings = Settings(options, blocks, assignment, ramp),
        };
        var run = TrainingRun.Run(runOptions, data, model, hooks, progress, epochDone, cancellation);

        var result = Result(options, model.Config, init, assignment, ramp, run, data, context.Settings.Device);
        RunDirectory.WriteJson(Path.Combine(options.OutDir, "metrics.json"), result);
        return result;
    }

    // The λ ramp's length as a fraction of training (0: the pruned form from the first step), after
    // checking that only the mixed method names blocks to drop.
    private static double RampOf(FinetuneOptions options)
    {
        var ramp = options.Method switch
        {
            FinetuneMethod.Updp or FinetuneMethod.Mixed => new LambdaRamp(options.Ramp, 1).Ramp,
            FinetuneMethod.Direct or FinetuneMethod.Drop => 0,
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Method, "unknown fine-tuning method"),
        };
        if (options.Method != FinetuneMethod.Mixed && options.Dropped is { Count: > 0 })
        {
            throw new ArgumentException($"method {options.Method.ToString().ToLowerInvariant()}: only the mixed method takes blocks to drop ({string.Join(",", options.Dropped)})");
        }
        return ramp;
    }

    // Puts every block of S in its progressive form (merged ones at λ=0, dropped ones fading) and
    // calibrates the new batch norms.
    private static (IReadOnlyList<IProgressiveBlock> Pruned, IReadOnlyList<IFadingBlock> Fading) PrepareBlocks(PruneContext context,
        ImageClassifier model, int[] blocks, BlockAssignment assignment, FinetuneOptions options)
    {
        IReadOnlyList<IProgressiveBlock> pruned;
        IReadOnlyList<IFadingBlock> fading = [];
        if (options.Method == FinetuneMethod.Mixed)
        {
            (pruned, fading) = PrepareMixed(model, assignment);
        }
        else
        {
            pruned = Prepare(model, blocks, options.Method);
        }
        if (pruned.Count > 0)
        {
            BatchNormCalibration.Recalibrate(model, context.CalibrationImages(options.Train.Seed), pruned.SelectMany(p => p.BatchNorms));
        }
        return (pruned, fading);
    }

    // S with its forms, the dropped blocks checked against S.
    private static BlockAssignment Assignment(int[] blocks, FinetuneOptions options)
    {
        if (options.Method == FinetuneMethod.Drop)
        {
            return new BlockAssignment([], blocks);
        }
        var dropped = options.Dropped ?? [];
        if (dropped.FirstOrDefault(d => !blocks.Contains(d), -1) is var stray and >= 0)
        {
            throw new ArgumentException($"block {stray} is to be dropped but is not among the blocks to prune ({string.Join(",", blocks)})");
        }
        if (dropped.GroupBy(d => d).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw new ArgumentException($"the blocks to drop: block {twice.Key} is listed more than once");
        }
        return new BlockAssignment(blocks.Except(dropped), dropped);
    }

    // What defines the run in run.json; the mixed method adds its dropped blocks (the others keep the settings they always had, so they resume as before).
    private static Dictionary<string, string> Settings(FinetuneOptions options, int[] blocks, BlockAssignment assignment, double ramp)
    {
        var settings = new Dictionary<string, string>
        {
            ["stage"] = "finetune",
            ["start"] = Path.GetFullPath(options.Checkpoint),
            ["method"] = options.Method.ToString().ToLowerInvariant(),
            ["blocks"] = string.Join(",", blocks),
            ["ramp"] = ramp.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
            ["distillation"] = StageData.Describe(options.Distillation),
        };
        if (options.Method == FinetuneMethod.Mixed)
        {
            settings["dropped"] = string.Join(",", assignment.Dropped);
        }
        return settings;
    }

    // Which kind of checkpoint the model is, checked against what the options expect.
    private static FinetuneInit CheckInit(ImageClassifier model, FinetuneOptions options)
    {
        var init = model.PrunedBlocks().Any() ? FinetuneInit.Supernet : FinetuneInit.Baseline;
        if (options.Init is { } expected && expected != init)
        {
            throw new ArgumentException(expected == FinetuneInit.Supernet
                ? $"init supernet: '{options.Checkpoint}' has no block in progressive form, so it is a baseline, not a supernet"
                : $"init baseline: '{options.Checkpoint}' has pruned blocks, so it is a supernet or a pruned model, not a baseline");
        }
        return init;
    }

    // The run's report, with the cost of the model once merged (from a verified merge of a copy, or from the structure alone).
    private static FinetuneResult Result(FinetuneOptions options, ModelConfig config, FinetuneInit init, BlockAssignment assignment, double ramp,
        TrainRunResult run, RunData data, Device device)
    {
        var metrics = run.Metrics!;
        var original = MergedCosts.Measure(config, data.Preprocessing.InputSize, []).Original;
        var (merged, mergeDiff) = options.VerifyMerge
            ? MergedCost(run.BestCheckpoint, data, device)
            : (PrunedCost(config, data.Preprocessing.InputSize, assignment), (double?)null);
        return new FinetuneResult
        {
            Model = metrics.Model,
            Method = options.Method.ToString().ToLowerInvariant(),
            Blocks = assignment.Blocks,
            Forms = options.Method == FinetuneMethod.Mixed ? assignment.Forms : null,
            InitCheckpoint = options.Checkpoint,
            Init = init.ToString().ToLowerInvariant(),
            Ramp = ramp,
            Distillation = options.Distillation,
            Checkpoint = run.BestCheckpoint,
            Top1 = metrics.Top1,
            TestLoss = metrics.TestLoss,
            ValTop1 = metrics.ValTop1,
            BestEpoch = metrics.BestEpoch,
            Params = merged.Params,
            Macs = merged.Macs,
            Original = original,
            MergeMaxAbsDiff = mergeDiff,
            Epochs = metrics.Epochs,
            TrainSeconds = metrics.TrainSeconds,
            InputSize = metrics.InputSize,
            BatchSize = metrics.BatchSize,
            LearningRate = metrics.LearningRate,
            Seed = metrics.Seed,
            TrainImages = metrics.TrainImages,
            Split = data.Split,
            History = metrics.History,
        };
    }

    /// <summary>
    /// Gives <paramref name="model"/> the structure <paramref name="method"/> fine-tunes: blocks of
    /// <paramref name="blocks"/> pruned (λ=0 for <see cref="FinetuneMethod.Updp"/>, λ=1 for
    /// <see cref="FinetuneMethod.Direct"/>) or dropped (<see cref="FinetuneMethod.Drop"/>), every
    /// other pruned block back in its original form (<see cref="BlockPruning.Unprune"/>).
    /// </summary>
    /// <returns>The pruned blocks (none for <see cref="FinetuneMethod.Drop"/>).</returns>
    /// <exception cref="ArgumentException">A block is merged, or dropped while the method needs it.</exception>
    public static IReadOnlyList<IProgressiveBlock> Prepare(ImageClassifier model, IReadOnlyCollection<int> blocks, FinetuneMethod method)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(blocks);
        var chosen = StageData.CheckBlocks(model, blocks, "the blocks to prune");
        var others = model.Blocks.Select(b => b.Index).Except(chosen).ToList();
        StageData.RequireUnmerged(model, method == FinetuneMethod.Drop ? others : model.Blocks.Select(b => b.Index), "the model");
        foreach (var index in others)
        {
            model.Unprune(index);
        }
        if (method == FinetuneMethod.Drop)
        {
            foreach (var index in chosen)
            {
                model.Drop(index);
            }
            return [];
        }
        var pruned = chosen.Select(model.Prune).ToList();
        foreach (var p in pruned)
        {
            p.Lambda = method == FinetuneMethod.Direct ? 1 : 0;
        }
        return pruned;
    }

    /// <summary>
    /// Gives <paramref name="model"/> the structure <see cref="FinetuneMethod.Mixed"/> fine-tunes
    /// (docs/METHOD.md#mixed): the merged blocks of <paramref name="assignment"/> pruned at λ=0, its
    /// dropped blocks in their progressive drop form at λ=0 (<see cref="BlockPruning.Fade"/>), every
    /// other pruned block back in its original form. The model then computes what its original
    /// blocks compute.
    /// </summary>
    /// <returns>The pruned blocks and the fading blocks, whose λ the ramp drives together.</returns>
    /// <exception cref="ArgumentException">A block is merged or dropped, or a block to drop cannot be dropped.</exception>
    public static (IReadOnlyList<IProgressiveBlock> Pruned, IReadOnlyList<IFadingBlock> Fading) PrepareMixed(ImageClassifier model, BlockAssignment assignment)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(assignment);
        StageData.CheckBlocks(model, assignment.Blocks, "the blocks to prune");
        foreach (var index in assignment.Dropped)
        {
            if (model.CannotDrop(index) is { } reason)
            {
                throw new ArgumentException($"method mixed: {BlockPruning.Describe(model.Blocks[index])} cannot be dropped: {reason}");
            }
        }
        // The dropped blocks fade out from their original form, so they are unpruned like the blocks outside S.
        var pruned = Prepare(model, assignment.Merged, FinetuneMethod.Updp);
        var fading = assignment.Dropped.Select(model.Fade).ToList();
        return (pruned, fading);
    }

    // The cost of the saved model once merged: a copy is loaded, merged and checked on real images.
    private static (ModelCost Cost, double? MaxAbsDiff) MergedCost(string checkpoint, RunData data, Device device)
    {
        var loaded = StageData.LoadCheckpoint(checkpoint, device);
        using var model = loaded.Model;
        using var scope = NewDisposeScope();
        var images = TrainingRun.EvalLoader(data.Splits.Validation, data.Preprocessing, 64).Epoch(0).Take(1).Select(b => b.Images).ToList();
        var report = Merger.MergeAll(model, images);
        var profile = ModelProfiler.Profile(model, data.Preprocessing.InputSize);
        return (new ModelCost(profile.Params, profile.Macs), report.MaxAbsDiff);
    }

    // The deployed cost of a model of this configuration with these blocks merged or dropped, from the structure alone.
    private static ModelCost PrunedCost(ModelConfig config, int inputSize, BlockAssignment assignment)
    {
        if (assignment.Dropped.Count == 0)
        {
            return MergedCosts.Measure(config, inputSize, assignment.Merged).Of(assignment.Merged);
        }
        if (assignment.Merged.Count > 0)
        {
            return MergedCosts.Measure(config, inputSize, assignment.Merged, assignment.Dropped).Of(assignment);
        }
        using var model = ModelRegistry.Create(config);
        foreach (var index in assignment.Dropped)
        {
            model.Drop(index);
        }
        var profile = ModelProfiler.Profile(model, inputSize);
        return new ModelCost(profile.Params, profile.Macs);
    }
}
