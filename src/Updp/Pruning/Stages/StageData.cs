using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>What the pruning stages share: loading their checkpoint and data, and setting λ.</summary>
internal static class StageData
{
    /// <summary>Loads an Updp checkpoint, pruned or not, with its structure, onto <paramref name="device"/> (default the CPU).</summary>
    public static LoadedCheckpoint LoadCheckpoint(string path, Device? device = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        return Checkpoint.Load(path, options: PrunedModels.LoadOptionsOn(device ?? Devices.Cpu));
    }

    /// <summary>
    /// The validation split a stage uses: what is given, else what the checkpoint's sidecar records
    /// (so that a stage holds out the images its predecessor held out), else the defaults.
    /// </summary>
    public static ValidationSplit ResolveSplit(int? validationCount, int? splitSeed, CheckpointMeta? meta, int fallbackSeed)
    {
        var recorded = ValidationSplit.FromMeta(meta);
        return new ValidationSplit(
            validationCount ?? recorded?.ValidationCount,
            splitSeed ?? recorded?.Seed ?? fallbackSeed);
    }

    /// <summary>
    /// Loads the data, prepared as the checkpoint's sidecar says (input size, normalisation) when it
    /// records it, and checks that the model has as many classes as the data.
    /// </summary>
    public static RunData LoadData(string data, ValidationSplit split, int? trainLimit, CheckpointMeta? meta, ImageClassifier model, DataOptions? dataOptions = null)
    {
        var run = TrainingRun.LoadData(data, split, trainLimit, meta?.Preprocessing, dataOptions);
        if (model.Config.NumClasses != run.Splits.Train.ClassCount)
        {
            throw new ArgumentException($"the model has {model.Config.NumClasses} classes but the data set '{data}' has {run.Splits.Train.ClassCount}");
        }
        return run;
    }

    /// <summary>
    /// The training options a training stage hands to <see cref="TrainingRun"/>: the model-building
    /// settings are unused, the input size is the data's.
    /// </summary>
    public static TrainRunOptions RunOptions(ImageClassifier model, StageSettings settings, string outDir, RunData run, TrainOptions train, bool resume, bool force = false) => new()
    {
        ModelName = model.Config.Name,
        Data = settings.Data,
        OutDir = outDir,
        Train = train,
        InputSize = run.Preprocessing.InputSize,
        CropPadding = settings.CropPadding,
        HorizontalFlip = settings.HorizontalFlip,
        ValidationCount = run.Split.ValidationCount,
        SplitSeed = run.Split.Seed,
        TrainLimit = settings.TrainLimit,
        Resume = resume,
        Force = force,
        EvalBatchSize = settings.EvalBatchSize,
        Device = settings.Device,
    };

    /// <summary>
    /// <paramref name="batches"/> batches of <paramref name="batchSize"/> training images, in a
    /// seeded random order, prepared as for evaluation (no augmentation): the images batch-norm
    /// statistics are calibrated on, on <paramref name="device"/> (default the CPU). The caller disposes them.
    /// </summary>
    public static List<Tensor> CalibrationImages(RunData run, int batches, int batchSize, int seed, Device? device = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batches);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var loader = new BatchLoader(run.Splits.Train, run.Preprocessing.EvaluationTransform(),
            new BatchLoaderOptions { BatchSize = batchSize, Shuffle = true, Seed = seed, Device = device });
        var images = new List<Tensor>();
        foreach (var batch in loader.Epoch(0).Take(batches))
        {
            images.Add(batch.Images.DetachFromDisposeScope());
            batch.Labels.Dispose();
        }
        return images.Count > 0 ? images : throw new ArgumentException("the training split has no images to calibrate batch norms on");
    }

    /// <summary>
    /// Puts every block of <paramref name="blocks"/> in its progressive form (pruning original ones)
    /// at λ=1 if it is in <paramref name="pruned"/> and λ=0 otherwise.
    /// </summary>
    public static void SetLambdas(ImageClassifier model, IEnumerable<int> blocks, IReadOnlySet<int> pruned)
    {
        foreach (var index in blocks)
        {
            model.Prune(index).Lambda = pruned.Contains(index) ? 1 : 0;
        }
    }

    /// <summary>The distinct block indices given, checked against the model, in ascending order.</summary>
    public static int[] CheckBlocks(ImageClassifier model, IEnumerable<int> blocks, string what)
    {
        var list = blocks.ToList();
        if (list.Where(i => i < 0 || i >= model.Blocks.Count).Take(1).ToList() is [var bad])
        {
            throw new ArgumentException($"{what}: block index {bad} is out of range; the model has {model.Blocks.Count} prunable blocks (0–{model.Blocks.Count - 1})");
        }
        if (list.GroupBy(i => i).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw new ArgumentException($"{what}: block {twice.Key} is listed more than once");
        }
        return [.. list.Order()];
    }

    /// <summary>Throws unless every listed block is original or pruned (not merged, dropped or fading).</summary>
    public static void RequireUnmerged(ImageClassifier model, IEnumerable<int> blocks, string checkpoint)
    {
        foreach (var index in blocks)
        {
            if (model.FormOf(index) is BlockForm.Merged or BlockForm.Dropped or BlockForm.Fading)
            {
                throw new ArgumentException(
                    $"{BlockPruning.Describe(model.Blocks[index])} of '{checkpoint}' is {model.FormOf(index).ToString().ToLowerInvariant()}; this stage needs blocks in original or pruned form");
            }
        }
    }

    /// <summary>Distillation settings as a run records them (<see cref="RunSettings"/>).</summary>
    public static string Describe(DistillationOptions? distillation) => distillation is null
        ? "none"
        : string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{Path.GetFullPath(distillation.Teacher)} (alpha {distillation.Alpha:R}, T {distillation.Temperature:R})");

    /// <summary>Disposes every tensor of a list.</summary>
    public static void DisposeAll(IEnumerable<Tensor> tensors)
    {
        foreach (var t in tensors)
        {
            t.Dispose();
        }
    }
}
