using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp.Modules;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Pruning;

namespace Updp.Training;

/// <summary>
/// The files of one training run: the best model (<c>model.safetensors</c> + sidecar, or another
/// name), the last epoch's model and optimizer state for <c>--resume</c>, and the run's state.
/// Every file is written to a temporary name and renamed, so an interrupted run never leaves a torn
/// file. Checkpoints of models with pruned, merged or dropped blocks record their
/// <see cref="PruningState"/> and load back with it.
/// </summary>
public sealed class RunDirectory : ITrainingStore
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private readonly Func<int, IReadOnlyDictionary<string, double>, CheckpointMeta> _meta;

    /// <param name="path">The run directory (created if missing).</param>
    /// <param name="meta">Builds the sidecar for a checkpoint saved at an epoch with its metrics.</param>
    /// <param name="resume">Whether <see cref="TryResume"/> continues an earlier run found here.</param>
    /// <param name="bestName">Base name of the best model's files (<c>model</c> gives <c>model.safetensors</c>).</param>
    public RunDirectory(string path, Func<int, IReadOnlyDictionary<string, double>, CheckpointMeta> meta, bool resume, string bestName = "model")
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(bestName);
        Path = path;
        _meta = meta;
        Resume = resume;
        BestCheckpoint = System.IO.Path.Combine(path, bestName + Checkpoint.WeightsExtension);
        Directory.CreateDirectory(path);
    }

    public string Path { get; }

    public bool Resume { get; }

    public string BestCheckpoint { get; }

    public string LastCheckpoint => System.IO.Path.Combine(Path, "last.safetensors");

    public string OptimizerState => System.IO.Path.Combine(Path, "last.optimizer");

    public string StateFile => System.IO.Path.Combine(Path, "train_state.json");

    public string MetricsFile => System.IO.Path.Combine(Path, "metrics.json");

    public TrainState? TryResume(ImageClassifier model, FusedAdamW optimizer)
    {
        if (!Resume || !File.Exists(StateFile))
        {
            return null;
        }
        var state = ReadJson<TrainState>(StateFile);
        var last = Checkpoint.Load(LastCheckpoint, options: PrunedModels.LoadOptions);
        using (last.Model)
        {
            StateDict.LoadInto(model, last.Model.state_dict(), LastCheckpoint);
        }
        optimizer.Load(OptimizerState);
        return state;
    }

    public void SaveBest(ImageClassifier model, EpochResult epoch) =>
        Checkpoint.Save(model, BestCheckpoint, PrunedModels.Describe(model, _meta(epoch.Epoch, Metrics(epoch))));

    public void SaveEpoch(ImageClassifier model, FusedAdamW optimizer, TrainState state)
    {
        Checkpoint.Save(model, LastCheckpoint, PrunedModels.Describe(model, _meta(state.EpochsDone, Metrics(state.History[^1]))));
        AtomicFile.Write(OptimizerState, optimizer.Save);
        WriteJson(StateFile, state);
    }

    public static void WriteJson<T>(string path, T value) =>
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(value, Json) + "\n");

    public static T ReadJson<T>(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), Json)
                ?? throw new InvalidDataException($"'{path}' holds no JSON value");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid: {e.Message}", e);
        }
    }

    private static Dictionary<string, double> Metrics(EpochResult e) => new()
    {
        ["val_top1"] = e.ValTop1,
        ["val_loss"] = e.ValLoss,
        ["train_loss"] = e.TrainLoss,
        ["train_top1"] = e.TrainTop1,
    };
}
