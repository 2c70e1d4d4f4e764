using System.Text.Json.Serialization;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Training;

/// <summary>Everything one <c>updp train</c> run needs.</summary>
public sealed record TrainRunOptions
{
    /// <summary>Registered model name; ignored when <see cref="InitCheckpoint"/> has a sidecar.</summary>
    public required string ModelName { get; init; }

    /// <summary><c>fashion-mnist</c>, <c>mnist</c>, a directory with the four idx files, an image folder or a CSV file list.</summary>
    public required string Data { get; init; }

    /// <summary>Preprocessing overrides, bad-image handling and the decoded cache.</summary>
    public DataOptions DataOptions { get; init; } = new();

    /// <summary>
    /// Fine-tune from these weights (a timm/torchvision state dict or our checkpoint) with the
    /// classifier re-initialised for the data's classes and the stem adapted to its channels.
    /// </summary>
    public string? Pretrained { get; init; }

    public required string OutDir { get; init; }

    public TrainOptions Train { get; init; } = new();

    /// <summary>Network input side (null: 32 for MNIST-style data, 224 for image folders); 28×28 images are zero-padded to it.</summary>
    public int? InputSize { get; init; }

    /// <summary>Stem stride; null uses the family's small-input setting when the input is ≤ 64 px.</summary>
    public int? StemStride { get; init; }

    public double DropPathRate { get; init; }

    /// <summary>Initial layer scale of a freshly initialised model (timm's <c>ls_init_value</c>, for families with one); null keeps the family's default.</summary>
    public double? LayerScaleInit { get; init; }

    /// <summary>Random-crop padding of the training augmentation (0 disables the crop).</summary>
    public int CropPadding { get; init; } = ImageTransform.DefaultCropPadding;

    /// <summary>Random horizontal flips in the training augmentation.</summary>
    public bool HorizontalFlip { get; init; } = true;

    /// <summary>Validation images carved from training; null: 5,000 for MNIST-style data, 10 % for image folders.</summary>
    public int? ValidationCount { get; init; }

    /// <summary>Seed of the shuffle that picks the validation images; null uses <see cref="TrainOptions.Seed"/>.</summary>
    public int? SplitSeed { get; init; }

    /// <summary>Use only the first N training images (quick runs and tests).</summary>
    public int? TrainLimit { get; init; }

    /// <summary>Start from these weights instead of a fresh initialisation.</summary>
    public string? InitCheckpoint { get; init; }

    /// <summary>Continue an interrupted run found in <see cref="OutDir"/>.</summary>
    public bool Resume { get; init; }

    /// <summary>Replace a run found in <see cref="OutDir"/> (finished or not) instead of refusing to.</summary>
    public bool Force { get; init; }

    public int EvalBatchSize { get; init; } = 256;

    /// <summary>Where the model is trained and evaluated (docs/DEVICES.md); checkpoints are written from the CPU either way.</summary>
    public Device Device { get; init; } = Devices.Cpu;
}

/// <summary>What <c>metrics.json</c> holds after a training run.</summary>
public sealed record TrainMetrics
{
    [JsonPropertyName("model")] public required string Model { get; init; }
    [JsonPropertyName("top1")] public double Top1 { get; init; }

    /// <summary>The split <see cref="Top1"/> was measured on: <c>test</c>, or <c>val</c> for a data set without a test split.</summary>
    [JsonPropertyName("test_split")] public string TestSplit { get; init; } = "test";

    /// <summary>Images left out as unusable (<c>--skip-bad-images</c>).</summary>
    [JsonPropertyName("skipped_images")] public int SkippedImages { get; init; }
    [JsonPropertyName("test_loss")] public double TestLoss { get; init; }
    [JsonPropertyName("val_top1")] public double ValTop1 { get; init; }
    [JsonPropertyName("best_epoch")] public int BestEpoch { get; init; }
    [JsonPropertyName("params")] public long Params { get; init; }
    [JsonPropertyName("macs")] public long Macs { get; init; }
    [JsonPropertyName("epochs")] public int Epochs { get; init; }
    [JsonPropertyName("train_seconds")] public double TrainSeconds { get; init; }
    [JsonPropertyName("input_size")] public int InputSize { get; init; }
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; }
    [JsonPropertyName("learning_rate")] public double LearningRate { get; init; }
    [JsonPropertyName("seed")] public int Seed { get; init; }
    [JsonPropertyName("train_images")] public int TrainImages { get; init; }
    [JsonPropertyName("history")] public IReadOnlyList<EpochResult> History { get; init; } = [];
}

/// <summary>The data of a training run: its splits, how images are prepared, and which images were held out.</summary>
public sealed record RunData(DataSplits Splits, Preprocessing Preprocessing, ValidationSplit Split);

/// <summary>
/// What turns a plain training run into another kind (a pruning stage, say) while keeping the same
/// data handling, checkpoints, resume and report: the <see cref="Trainer"/>'s hooks plus a few
/// settings of the run. The defaults give <c>updp train</c>.
/// </summary>
public sealed record TrainRunHooks
{
    /// <inheritdoc cref="Trainer.Loss"/>
    public Func<Tensor, Tensor, Tensor, Tensor>? Loss { get; init; }

    /// <inheritdoc cref="Trainer.BeforeStep"/>
    public Action<long, long>? BeforeStep { get; init; }

    /// <inheritdoc cref="Trainer.BeforeEvaluate"/>
    public Action<long, long>? BeforeEvaluate { get; init; }

    /// <inheritdoc cref="Trainer.CanBeBest"/>
    public Func<int, bool>? CanBeBest { get; init; }

    /// <summary>Base name of the best model's checkpoint in the run directory.</summary>
    public string CheckpointName { get; init; } = "model";

    /// <summary>
    /// Whether the best model is evaluated on the test set; without it the run returns no
    /// <see cref="TrainMetrics"/>, writes no <c>metrics.json</c> and touches no test image.
    /// </summary>
    public bool EvaluateTest { get; init; } = true;

    /// <summary>Whether the run writes its <see cref="TrainMetrics"/> to <c>metrics.json</c> (a stage may write a richer record there).</summary>
    public bool WriteMetrics { get; init; } = true;

    /// <summary>Settings of the stage that define the run besides the recipe (e.g. the pruned blocks), recorded in <c>run.json</c>.</summary>
    public IReadOnlyDictionary<string, string> Settings { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// The caller's lock on the run directory, when it holds the directory for longer than the
    /// training (a stage that writes its report after it); null: the run locks it while it trains.
    /// </summary>
    public RunLock? Lock { get; init; }
}

/// <summary>The outcome of <see cref="TrainingRun.Run(TrainRunOptions, RunData, ImageClassifier, TrainRunHooks, IProgress{TrainProgress}?, Action{EpochResult}?, CancellationToken)"/>.</summary>
/// <param name="State">The finished training's history and best epoch.</param>
/// <param name="BestCheckpoint">The best model's checkpoint.</param>
/// <param name="Metrics">The best model's test results, or null when the run did not evaluate on the test set.</param>
public sealed record TrainRunResult(TrainState State, string BestCheckpoint, TrainMetrics? Metrics);

/// <summary>Trains a classifier on an image data set and writes checkpoints and metrics to a run directory.</summary>
public static class TrainingRun
{
    public static TrainMetrics Run(TrainRunOptions options, IProgress<TrainProgress>? progress = null,
        Action<EpochResult>? epochDone = null, CancellationToken cancellation = default)
    {
        var data = LoadData(options);
        random.manual_seed(options.Train.Seed);
        using var model = CreateModel(options, data).MoveTo(options.Device);
        return Run(options, data, model, new TrainRunHooks(), progress, epochDone, cancellation).Metrics!;
    }

    /// <summary>
    /// Loads the splits <paramref name="options"/> describe (data, validation count and split seed,
    /// training limit). <paramref name="preprocessing"/>, e.g. from the checkpoint a run starts from,
    /// overrides the one computed from the training split and <see cref="TrainRunOptions.InputSize"/>.
    /// </summary>
    public static RunData LoadData(TrainRunOptions options, Preprocessing? preprocessing = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        return LoadData(options.Data, new ValidationSplit(options.ValidationCount, options.SplitSeed ?? options.Train.Seed),
            options.TrainLimit, preprocessing, options.DataOptions with { InputSize = options.InputSize ?? options.DataOptions.InputSize });
    }

    /// <summary>
    /// Loads data set <paramref name="data"/> (see <see cref="DatasetCatalog.Resolve"/>), holds out
    /// <paramref name="split"/>'s validation images and keeps the first <paramref name="trainLimit"/>
    /// training images. Without <paramref name="preprocessing"/> (a checkpoint's), images are
    /// prepared as <paramref name="dataOptions"/> says on top of the data kind's defaults
    /// (<see cref="DataOptions.DefaultPreprocessing"/>). With a cache directory, the splits read
    /// decoded images from it (built on first use).
    /// </summary>
    public static RunData LoadData(string data, ValidationSplit split, int? trainLimit = null, Preprocessing? preprocessing = null,
        DataOptions? dataOptions = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(split);
        dataOptions ??= new DataOptions();
        var source = DatasetCatalog.Resolve(data);
        var splits = source.LoadSplits(split.ValidationCount, split.Seed,
            new DataLoadOptions
            {
                SkipBadImages = dataOptions.SkipBadImages,
                Progress = dataOptions.Progress,
                TestOnly = dataOptions.TestOnly,

                // Without a cache (whose build decodes everything), skipping truncated files means decoding them first.
                DecodeToCheck = dataOptions.SkipBadImages && dataOptions.CacheDirectory is null,
            });
        if (trainLimit is int limit)
        {
            splits = splits with { Train = splits.Train.Take(limit) };
        }
        var prepared = preprocessing ?? dataOptions.DefaultPreprocessing(splits);
        if (dataOptions.CacheDirectory is { } cache)
        {
            splits = dataOptions.TestOnly
                ? splits with { Test = splits.WithCache(cache, prepared, dataOptions.SkipBadImages, dataOptions.Progress, testOnly: true).Test }
                : splits.WithCache(cache, prepared, dataOptions.SkipBadImages, dataOptions.Progress);
        }
        return new RunData(splits, prepared, split with { ValidationCount = split.ValidationCount ?? splits.Validation.Count });
    }

    /// <summary>
    /// Trains <paramref name="model"/> on <paramref name="data"/> with the recipe of
    /// <paramref name="options"/> (its model-building settings are not used) and the trainer hooks of
    /// <paramref name="hooks"/>; writes the best (per <see cref="TrainRunHooks.CanBeBest"/>) and the
    /// last model, the resume state and, when the test set is evaluated, <c>metrics.json</c>. The
    /// reported test score is the best checkpoint's, measured once. Everything runs on the model's device.
    /// </summary>
    public static TrainRunResult Run(TrainRunOptions options, RunData data, ImageClassifier model, TrainRunHooks hooks,
        IProgress<TrainProgress>? progress = null, Action<EpochResult>? epochDone = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(hooks);
        Check(options, data);
        var (splits, preprocessing, split) = data;
        var classes = splits.Train.ClassNames;
        using var store = RunDirectory.Open(options.OutDir,
            (epoch, metrics) => split.AddTo(new CheckpointMeta { Classes = classes, Epoch = epoch, Metrics = metrics, Preprocessing = preprocessing }),
            RunSettings.Of(options, data, hooks.Settings), options.Resume, options.Force, hooks.CheckpointName, hooks.Lock);

        var device = Devices.Of(model);
        var train = TrainLoader(options, data, device);
        var val = EvalLoader(splits.Validation, preprocessing, options.EvalBatchSize, device);
        var trainer = new Trainer(model, options.Train)
        {
            Loss = hooks.Loss,
            BeforeStep = hooks.BeforeStep,
            BeforeEvaluate = hooks.BeforeEvaluate,
            CanBeBest = hooks.CanBeBest,
        };
        TrainState state;
        try
        {
            state = trainer.Fit(train, val, new EpochReporter(store, epochDone), progress, cancellation);
        }
        catch (TrainingDivergedException e)
        {
            throw e.WithLastGood(File.Exists(store.LastCheckpoint) ? store.LastCheckpoint : null);
        }
        if (!hooks.EvaluateTest)
        {
            return new TrainRunResult(state, store.BestCheckpoint, null);
        }

        var best = Checkpoint.Load(store.BestCheckpoint, options: PrunedModels.LoadOptionsOn(device));
        using var bestModel = best.Model;
        var test = Evaluator.Evaluate(bestModel, EvalLoader(splits.Test, preprocessing, options.EvalBatchSize, device).Epoch(0));
        var profile = ModelProfiler.Profile(bestModel, preprocessing.InputSize);
        var metrics = new TrainMetrics
        {
            Model = bestModel.Config.Name,
            Top1 = test.Top1,
            TestSplit = splits.TestName,
            SkippedImages = splits.SkippedImages.Count,
            TestLoss = test.Loss,
            ValTop1 = state.BestValTop1,
            BestEpoch = state.BestEpoch,
            Params = profile.Params,
            Macs = profile.Macs,
            Epochs = state.EpochsDone,
            TrainSeconds = state.TrainSeconds,
            InputSize = preprocessing.InputSize,
            BatchSize = options.Train.BatchSize,
            LearningRate = options.Train.LearningRate,
            Seed = options.Train.Seed,
            TrainImages = splits.Train.Count,
            History = state.History,
        };
        if (hooks.WriteMetrics)
        {
            RunDirectory.WriteJson(store.MetricsFile, metrics);
        }
        return new TrainRunResult(state, store.BestCheckpoint, metrics);
    }

    /// <summary>
    /// Throws unless <paramref name="data"/> can be trained on with <paramref name="options"/>: a
    /// validation split to choose the best epoch on, training images left, a full batch of them.
    /// Run before anything is written; a stage that locks its directory first calls it before that.
    /// </summary>
    public static void Check(TrainRunOptions options, RunData data)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(data);
        var splits = data.Splits;
        if (splits.Validation.Count == 0)
        {
            throw new ArgumentException("--val-size must be ≥ 1 for training: the best epoch is chosen on the validation split");
        }
        if (splits.Train.Count == 0)
        {
            throw new ArgumentException(
                $"no training images are left in '{options.Data}' after holding out {splits.Validation.Count} for validation; give a smaller --val-size");
        }
        if (splits.Train.Count < options.Train.BatchSize)
        {
            throw new ArgumentException(
                $"--batch-size {options.Train.BatchSize} is larger than the {splits.Train.Count} training images of '{options.Data}' (each step takes a full batch); give --batch-size {Math.Max(1, splits.Train.Count)} or less");
        }
    }

    /// <summary>The shuffled, augmented training batches of a run (the last partial batch dropped), on <paramref name="device"/> (default the CPU).</summary>
    public static BatchLoader TrainLoader(TrainRunOptions options, RunData data, Device? device = null) =>
        new(data.Splits.Train,
            data.Preprocessing.TrainingTransform(options.CropPadding, options.HorizontalFlip),
            new BatchLoaderOptions { BatchSize = options.Train.BatchSize, Shuffle = true, DropLast = true, Seed = options.Train.Seed, Device = device });

    /// <summary>Batches of <paramref name="images"/> in order, prepared for evaluation, on <paramref name="device"/> (default the CPU).</summary>
    public static BatchLoader EvalLoader(ImageDataset images, Preprocessing preprocessing, int batchSize = 256, Device? device = null) =>
        new(images, preprocessing.EvaluationTransform(), new BatchLoaderOptions { BatchSize = batchSize, Device = device });

    /// <summary>Receives the tensors <see cref="CreateModel"/> did not take from <see cref="TrainRunOptions.Pretrained"/> as they were.</summary>
    public static Action<TransferResult>? TransferReported { get; set; }

    /// <summary>
    /// The model a run trains: from <see cref="TrainRunOptions.InitCheckpoint"/> as it is, from
    /// <see cref="TrainRunOptions.Pretrained"/> adapted to the data's classes and channels, or
    /// freshly initialised for the data's input size, channels and classes.
    /// </summary>
    public static ImageClassifier CreateModel(TrainRunOptions options, RunData data)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(data);
        var splits = data.Splits;
        var channels = data.Preprocessing.ChannelCount;
        if (options.Pretrained is { } pretrained)
        {
            var transfer = Checkpoint.LoadForTransfer(pretrained, options.ModelName, splits.Train.ClassCount, channels,
                c => c with { DropPathRate = options.DropPathRate });
            if (transfer.Model.Config.ImgSize is int fixedSize && fixedSize != data.Preprocessing.InputSize)
            {
                transfer.Model.Dispose();
                throw new ArgumentException(
                    $"'{pretrained}' is a {options.ModelName} built for {fixedSize}px inputs; give --input-size {fixedSize}");
            }
            TransferReported?.Invoke(transfer);
            return transfer.Model;
        }
        if (options.InitCheckpoint is { } init)
        {
            var loaded = Checkpoint.Load(init, options.ModelName, new CheckpointLoadOptions
            {
                Configure = c => c with { DropPathRate = options.DropPathRate },
            });
            if (loaded.Model.Config.NumClasses != splits.Train.ClassCount)
            {
                var n = loaded.Model.Config.NumClasses;
                loaded.Model.Dispose();
                throw new ArgumentException($"'{init}' has {n} classes but the data set '{options.Data}' has {splits.Train.ClassCount}");
            }
            return loaded.Model;
        }
        var config = ModelConfig.ForInput(options.ModelName, data.Preprocessing.InputSize, channels, splits.Train.ClassCount, options.StemStride);
        return ModelRegistry.Create(config with { DropPathRate = options.DropPathRate, LayerScaleInit = options.LayerScaleInit });
    }

    /// <summary>Passes each finished epoch on to the caller after the store has saved it.</summary>
    private sealed class EpochReporter(RunDirectory store, Action<EpochResult>? epochDone) : ITrainingStore
    {
        public TrainState? TryResume(ImageClassifier model, FusedAdamW optimizer) => store.TryResume(model, optimizer);

        public void SaveBest(ImageClassifier model, EpochResult epoch) => store.SaveBest(model, epoch);

        public void SaveEpoch(ImageClassifier model, FusedAdamW optimizer, TrainState state)
        {
            store.SaveEpoch(model, optimizer, state);
            epochDone?.Invoke(state.History[^1]);
        }
    }
}
