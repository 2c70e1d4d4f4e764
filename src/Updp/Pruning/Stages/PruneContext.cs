using Updp.Checkpoints;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>
/// What the stages of one pruning run share, loaded once: the checkpoint the run starts from (the
/// baseline, or for a single stage its input), the data with the held-out split its sidecar
/// records, the batch-norm calibration images and the distillation teacher. The stages never
/// modify <see cref="Model"/>; a stage that trains takes a <see cref="CopyModel">copy</see>. Models
/// and calibration images are on <see cref="StageSettings.Device"/>.
/// </summary>
public sealed class PruneContext : IDisposable
{
    private readonly Dictionary<(int Seed, bool Limited), List<Tensor>> _calibration = [];
    private readonly Dictionary<string, Teacher> _teachers = new(StringComparer.Ordinal);
    private RunData? _trainingData;

    private PruneContext(string checkpoint, LoadedCheckpoint loaded, RunData data, StageSettings settings)
    {
        Checkpoint = checkpoint;
        Model = loaded.Model;
        Meta = loaded.Meta;
        Data = data;
        Settings = settings;
    }

    /// <summary>The path of the checkpoint the run starts from.</summary>
    public string Checkpoint { get; }

    /// <summary>Its model, in eval mode; shared, so never trained or pruned.</summary>
    public ImageClassifier Model { get; }

    /// <summary>Its sidecar (preprocessing, split, pruning state).</summary>
    public CheckpointMeta? Meta { get; }

    public StageSettings Settings { get; }

    /// <summary>The data with the whole training split (what the search calibrates on).</summary>
    public RunData Data { get; }

    /// <summary>The data the training stages use: the first <see cref="StageSettings.TrainLimit"/> training images.</summary>
    public RunData TrainingData => _trainingData ??= Settings.TrainLimit is int limit
        ? Data with { Splits = Data.Splits with { Train = Data.Splits.Train.Take(limit) } }
        : Data;

    /// <summary>
    /// Loads <paramref name="checkpoint"/> (an Updp checkpoint, pruned or not) and the data prepared
    /// as its sidecar says, holding out the split it records (else the settings' count and seed,
    /// else <paramref name="seed"/>), and checks that the model has the data's classes.
    /// </summary>
    public static PruneContext Open(string checkpoint, StageSettings settings, int seed)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpoint);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(settings.CalibrationBatches, nameof(settings.CalibrationBatches));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(settings.CalibrationBatchSize, nameof(settings.CalibrationBatchSize));
        var loaded = StageData.LoadCheckpoint(checkpoint, settings.Device);
        try
        {
            var split = StageData.ResolveSplit(settings.ValidationCount, settings.SplitSeed, loaded.Meta, seed);
            var data = StageData.LoadData(settings.Data, split, trainLimit: null, loaded.Meta, loaded.Model, settings.DataOptions);
            return new PruneContext(checkpoint, loaded, data, settings);
        }
        catch
        {
            loaded.Model.Dispose();
            throw;
        }
    }

    /// <summary>A new model with <see cref="Model"/>'s structure and weights, for a stage to train or prune; the caller disposes it.</summary>
    public ImageClassifier CopyModel()
    {
        var copy = PrunedModels.Create(Model.Config, Meta, Settings.Device);
        try
        {
            using var scope = NewDisposeScope();
            StateDict.LoadInto(copy, Model.state_dict(), Checkpoint);
            copy.eval();
            return copy;
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The model of <paramref name="checkpoint"/> for a stage to train or prune: a <see cref="CopyModel">copy</see>
    /// of the context's when it is the context's checkpoint, else loaded (an earlier stage's output),
    /// after checking that it fits the context's data. The caller disposes it.
    /// </summary>
    public ImageClassifier ModelOf(string checkpoint)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpoint);
        if (Path.GetFullPath(checkpoint) == Path.GetFullPath(Checkpoint))
        {
            return CopyModel();
        }
        var loaded = StageData.LoadCheckpoint(checkpoint, Settings.Device);
        try
        {
            if (loaded.Model.Config.NumClasses != Data.Splits.Train.ClassCount)
            {
                throw new ArgumentException($"'{checkpoint}' has {loaded.Model.Config.NumClasses} classes but the data set '{Settings.Data}' has {Data.Splits.Train.ClassCount}");
            }
            if (loaded.Meta?.Preprocessing is { } prepared && prepared != Data.Preprocessing)
            {
                throw new ArgumentException($"'{checkpoint}' was trained on differently prepared images ({prepared}) than '{Checkpoint}' ({Data.Preprocessing})");
            }
            return loaded.Model;
        }
        catch
        {
            loaded.Model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The batch-norm calibration images (<see cref="StageSettings.CalibrationBatches"/> batches in
    /// a <paramref name="seed"/>ed order, prepared for evaluation) from the training stages' images or,
    /// with <paramref name="limited"/> false, the whole training split. Made once per seed; owned by the context.
    /// </summary>
    public IReadOnlyList<Tensor> CalibrationImages(int seed, bool limited = true)
    {
        if (!_calibration.TryGetValue((seed, limited), out var images))
        {
            images = StageData.CalibrationImages(limited ? TrainingData : Data, Settings.CalibrationBatches, Settings.CalibrationBatchSize, seed, Settings.Device);
            _calibration[(seed, limited)] = images;
        }
        return images;
    }

    /// <summary>
    /// The teacher of <paramref name="options"/> for <paramref name="student"/>, loaded once; the
    /// context's own model when the teacher is the checkpoint the run starts from.
    /// </summary>
    internal Teacher Teacher(DistillationOptions options, ImageClassifier student)
    {
        ArgumentNullException.ThrowIfNull(options);
        var key = Path.GetFullPath(options.Teacher);
        if (!_teachers.TryGetValue(key, out var teacher))
        {
            teacher = key == Path.GetFullPath(Checkpoint)
                ? Updp.Pruning.Teacher.Of(Model, Meta, options, student, Data.Preprocessing)
                : Updp.Pruning.Teacher.Load(options, student, Data.Preprocessing);
            _teachers[key] = teacher;
        }
        teacher.Check(student, Data.Preprocessing);
        return teacher;
    }

    public void Dispose()
    {
        foreach (var images in _calibration.Values)
        {
            StageData.DisposeAll(images);
        }
        _calibration.Clear();
        foreach (var teacher in _teachers.Values)
        {
            teacher.Dispose();
        }
        _teachers.Clear();
        Model.Dispose();
    }
}
