using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp.Modules;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Pruning.Blocks;

namespace Updp.Training;

/// <summary>
/// The files of one training run: the best model (<c>model.safetensors</c> + sidecar, or another
/// name), the last epoch's model and optimizer state for <c>--resume</c>, the run's state and the
/// settings that define it (<c>run.json</c>). Every file is written to a temporary name and renamed,
/// so an interrupted run never leaves a torn file. Checkpoints of models with pruned, merged or
/// dropped blocks record their <see cref="PruningState"/> and load back with it. An open run
/// directory is locked (<see cref="RunLock"/>) until disposed.
/// </summary>
public sealed class RunDirectory : ITrainingStore, IDisposable
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private readonly Func<int, IReadOnlyDictionary<string, double>, CheckpointMeta> _meta;
    // Null when the caller holds the directory's lock (and releases it).
    private readonly RunLock? _lock;
    private readonly string _bestName;

    private RunDirectory(string path, Func<int, IReadOnlyDictionary<string, double>, CheckpointMeta> meta, bool resume, string bestName, RunLock? ownLock)
    {
        Path = path;
        _meta = meta;
        Resume = resume;
        _bestName = bestName;
        BestCheckpoint = System.IO.Path.Combine(path, bestName + Checkpoint.WeightsExtension);
        _lock = ownLock;
    }

    /// <summary>
    /// Opens (and locks) the run directory <paramref name="path"/>, created if missing. A run found
    /// there is continued only with <paramref name="resume"/> and the same <paramref name="settings"/>,
    /// replaced only with <paramref name="force"/>, and otherwise refused; leftover temporary files of
    /// an interrupted save are removed.
    /// </summary>
    /// <param name="meta">Builds the sidecar for a checkpoint saved at an epoch with its metrics.</param>
    /// <param name="settings">What defines this run; recorded in <c>run.json</c>.</param>
    /// <param name="resume">Whether <see cref="TryResume"/> continues an earlier run found here.</param>
    /// <param name="force">Whether an earlier run found here is deleted and started over.</param>
    /// <param name="bestName">Base name of the best model's files (<c>model</c> gives <c>model.safetensors</c>).</param>
    /// <param name="heldLock">
    /// The caller's lock on <paramref name="path"/>, when it holds the directory for longer than the
    /// training (a stage that writes its report afterwards); null takes a lock until disposed.
    /// </param>
    /// <exception cref="ArgumentException">A run is there and neither resumed with the same settings nor forced.</exception>
    /// <exception cref="RunSettingsMismatchException">The run there was started with other settings.</exception>
    /// <exception cref="RunInUseException">Another process has the directory open.</exception>
    public static RunDirectory Open(string path, Func<int, IReadOnlyDictionary<string, double>, CheckpointMeta> meta, RunSettings settings,
        bool resume, bool force, string bestName = "model", RunLock? heldLock = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(bestName);
        ArgumentNullException.ThrowIfNull(settings);
        if (heldLock is not null && !heldLock.Covers(path))
        {
            throw new ArgumentException($"the lock given is on '{heldLock.Directory}', not on the run directory '{path}'", nameof(heldLock));
        }
        var store = new RunDirectory(path, meta, resume, bestName, heldLock is null ? RunLock.Acquire(path, "a training run") : null);
        try
        {
            store.Prepare(settings, force);
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>The settings recorded when the run started.</summary>
    public string RunFile => System.IO.Path.Combine(Path, RunName);

    /// <summary>The file that records a run's settings (<see cref="RunSettings"/>).</summary>
    public const string RunName = "run.json";

    private const string LastName = "last.safetensors";
    private const string OptimizerName = "last.optimizer";
    private const string StateName = "train_state.json";
    private const string MetricsName = "metrics.json";

    private IEnumerable<string> RunFiles => RunFilesOf(Path, _bestName);

    /// <summary>
    /// The files a run in <paramref name="path"/> whose best model is named <paramref name="bestName"/>
    /// writes (whether they exist or not): what <c>--force</c> deletes.
    /// </summary>
    public static IReadOnlyList<string> RunFilesOf(string path, string bestName = "model")
    {
        ArgumentNullException.ThrowIfNull(path);
        var best = System.IO.Path.Combine(path, bestName + Checkpoint.WeightsExtension);
        var last = System.IO.Path.Combine(path, LastName);
        return [best, Checkpoint.SidecarPath(best), last, Checkpoint.SidecarPath(last),
            .. new[] { OptimizerName, StateName, MetricsName, RunName }.Select(name => System.IO.Path.Combine(path, name))];
    }

    private void Prepare(RunSettings settings, bool force)
    {
        var found = RunFiles.Where(File.Exists).ToList();
        if (found.Count > 0 && force)
        {
            found.ForEach(File.Delete);
        }
        else if (found.Count > 0 && !Resume)
        {
            throw new ArgumentException(File.Exists(MetricsFile)
                ? $"'{Path}' holds a finished run ({System.IO.Path.GetFileName(MetricsFile)}, {System.IO.Path.GetFileName(BestCheckpoint)}); choose another --out, or give --force to replace it"
                : $"'{Path}' holds an interrupted run; give --resume to continue it, or --force to start over");
        }
        else if (Resume && File.Exists(RunFile))
        {
            var differences = ReadJson<RunSettings>(RunFile).Differences(settings);
            if (differences.Count > 0)
            {
                throw new RunSettingsMismatchException(Path, differences,
                    $"--resume: the run in '{Path}' was started with other settings ({string.Join("; ", differences)}); give the same ones, or --force to start over");
            }
        }
        // Temporary files of a save that was interrupted (kill -9, a full disk) hold nothing of value.
        foreach (var tmp in Directory.EnumerateFiles(Path, ".*.tmp"))
        {
            File.Delete(tmp);
        }
        WriteJson(RunFile, settings);
    }

    public void Dispose() => _lock?.Dispose();

    public string Path { get; }

    public bool Resume { get; }

    public string BestCheckpoint { get; }

    public string LastCheckpoint => System.IO.Path.Combine(Path, LastName);

    public string OptimizerState => System.IO.Path.Combine(Path, OptimizerName);

    public string StateFile => System.IO.Path.Combine(Path, StateName);

    public string MetricsFile => System.IO.Path.Combine(Path, MetricsName);

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
