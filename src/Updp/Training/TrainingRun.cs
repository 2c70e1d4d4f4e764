using System.Text.Json.Serialization;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Training;

/// <summary>Everything one <c>updp train</c> run needs.</summary>
public sealed record TrainRunOptions
{
    /// <summary>Registered model name; ignored when <see cref="InitCheckpoint"/> has a sidecar.</summary>
    public required string ModelName { get; init; }

    /// <summary><c>fashion-mnist</c>, <c>mnist</c> or a directory with the four idx files.</summary>
    public required string Data { get; init; }

    public required string OutDir { get; init; }

    public TrainOptions Train { get; init; } = new();

    /// <summary>Network input side; 28×28 images are zero-padded to it.</summary>
    public int InputSize { get; init; } = 32;

    /// <summary>Stem stride; null uses the family's small-input setting when the input is ≤ 64 px.</summary>
    public int? StemStride { get; init; }

    public double DropPathRate { get; init; }

    /// <summary>Random-crop padding of the training augmentation (0 disables the crop); 2 beat 4 in short runs (docs/BENCHMARKS.md).</summary>
    public int CropPadding { get; init; } = 2;

    /// <summary>Random horizontal flips in the training augmentation.</summary>
    public bool HorizontalFlip { get; init; } = true;

    public int ValidationCount { get; init; } = DataSplits.DefaultValidationCount;

    /// <summary>Use only the first N training images (quick runs and tests).</summary>
    public int? TrainLimit { get; init; }

    /// <summary>Start from these weights instead of a fresh initialisation.</summary>
    public string? InitCheckpoint { get; init; }

    /// <summary>Continue an interrupted run found in <see cref="OutDir"/>.</summary>
    public bool Resume { get; init; }

    public int EvalBatchSize { get; init; } = 256;
}

/// <summary>What <c>metrics.json</c> holds after a training run.</summary>
public sealed record TrainMetrics
{
    [JsonPropertyName("model")] public required string Model { get; init; }
    [JsonPropertyName("top1")] public double Top1 { get; init; }
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

/// <summary>Trains a classifier on an image data set and writes checkpoints and metrics to a run directory.</summary>
public static class TrainingRun
{
    public static TrainMetrics Run(TrainRunOptions options, IProgress<TrainProgress>? progress = null,
        Action<EpochResult>? epochDone = null, CancellationToken cancellation = default)
    {
        var source = DatasetCatalog.Resolve(options.Data);
        var splits = source.LoadSplits(options.ValidationCount, options.Train.Seed);
        if (options.TrainLimit is int limit)
        {
            splits = splits with { Train = splits.Train.Take(limit) };
        }
        var preprocessing = Preprocessing.For(splits.Train, splits.Normalization, options.InputSize);

        random.manual_seed(options.Train.Seed);
        using var model = CreateModel(options, splits);
        var classes = splits.Train.ClassNames;
        var store = new RunDirectory(options.OutDir,
            (epoch, metrics) => new CheckpointMeta { Classes = classes, Epoch = epoch, Metrics = metrics, Preprocessing = preprocessing },
            options.Resume);

        var train = new BatchLoader(splits.Train, ImageTransform.ForTraining(splits.Normalization, options.InputSize, options.CropPadding, options.HorizontalFlip),
            new BatchLoaderOptions { BatchSize = options.Train.BatchSize, Shuffle = true, DropLast = true, Seed = options.Train.Seed });
        var val = EvalLoader(splits.Validation, preprocessing, options.EvalBatchSize);
        var trainer = new Trainer(model, options.Train);
        var state = trainer.Fit(train, val, new EpochReporter(store, epochDone), progress, cancellation);

        // The reported score is the best-on-validation checkpoint's, measured once on the test set.
        var best = Checkpoint.Load(store.BestCheckpoint);
        using var bestModel = best.Model;
        var test = Evaluator.Evaluate(bestModel, EvalLoader(splits.Test, preprocessing, options.EvalBatchSize).Epoch(0));
        var profile = ModelProfiler.Profile(bestModel, options.InputSize);
        var metrics = new TrainMetrics
        {
            Model = bestModel.Config.Name,
            Top1 = test.Top1,
            TestLoss = test.Loss,
            ValTop1 = state.BestValTop1,
            BestEpoch = state.BestEpoch,
            Params = profile.Params,
            Macs = profile.Macs,
            Epochs = state.EpochsDone,
            TrainSeconds = state.TrainSeconds,
            InputSize = options.InputSize,
            BatchSize = options.Train.BatchSize,
            LearningRate = options.Train.LearningRate,
            Seed = options.Train.Seed,
            TrainImages = splits.Train.Count,
            History = state.History,
        };
        RunDirectory.WriteJson(store.MetricsFile, metrics);
        return metrics;
    }

    public static BatchLoader EvalLoader(LabeledImages images, Preprocessing preprocessing, int batchSize = 256) =>
        new(images, preprocessing.EvaluationTransform(), new BatchLoaderOptions { BatchSize = batchSize });

    private static ImageClassifier CreateModel(TrainRunOptions options, DataSplits splits)
    {
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
        var variant = ModelRegistry.Get(options.ModelName);
        return ModelRegistry.Create(new ModelConfig
        {
            Name = options.ModelName,
            InChans = 1,
            NumClasses = splits.Train.ClassCount,
            StemStride = options.StemStride ?? (options.InputSize <= 64 ? variant.SmallInputStemStride : null),
            DropPathRate = options.DropPathRate,
        });
    }

    /// <summary>Passes each finished epoch on to the caller after the store has saved it.</summary>
    private sealed class EpochReporter(RunDirectory store, Action<EpochResult>? epochDone) : ITrainingStore
    {
        public TrainState? TryResume(ImageClassifier model, TorchSharp.Modules.OptimizerHelper optimizer) => store.TryResume(model, optimizer);

        public void SaveBest(ImageClassifier model, EpochResult epoch) => store.SaveBest(model, epoch);

        public void SaveEpoch(ImageClassifier model, TorchSharp.Modules.OptimizerHelper optimizer, TrainState state)
        {
            store.SaveEpoch(model, optimizer, state);
            epochDone?.Invoke(state.History[^1]);
        }
    }
}
