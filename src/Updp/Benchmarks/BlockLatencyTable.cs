using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Updp.Export;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Benchmarks;

/// <summary>One block's measured latency in its original and in its merged form, on its own input.</summary>
/// <param name="DroppedMs">
/// Its dropped form's (the identity, or what a strided block keeps of its shortcut; docs/METHOD.md#mixed);
/// null where the block cannot be dropped, and in tables measured before dropped forms were.
/// </param>
public sealed record BlockLatency(int Index, double OriginalMs, double MergedMs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? DroppedMs = null)
{
    /// <summary>What merging this block saves (negative when the merged form is slower).</summary>
    public double SavingMs => OriginalMs - MergedMs;

    /// <summary>What dropping this block saves; null where it cannot be dropped (or was not measured).</summary>
    [JsonIgnore]
    public double? DropSavingMs => OriginalMs - DroppedMs;
}

/// <summary>
/// Per-block latency of a model on this machine, for one input size, batch and thread count: the
/// table a latency-aware search predicts subsets' latency from (as LayerMerge does), instead of
/// timing every candidate. A block's time depends only on its own form and input shape, and merging
/// keeps the shape, so a subset S is predicted at <see cref="ModelMs"/> − Σ_{i∈S} saving_i.
/// Dropped forms keep the shape too, so an assignment of the mixed space subtracts each dropped
/// block's drop saving instead (<see cref="HasDroppedForms"/>).
/// <see cref="AllMergedMs"/>, the whole model with every block merged, measured, shows how far that
/// additivity holds. Random weights: latency does not depend on their values.
/// </summary>
public sealed record BlockLatencyTable
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
    };

    /// <summary>
    /// The engine the times are for (<see cref="InferenceEngines.Name"/>): <c>torchsharp</c>, or
    /// <c>onnxruntime</c> (each block exported on its own and run in ONNX Runtime on the CPU);
    /// tables from before engines are TorchSharp ones.
    /// </summary>
    public string Engine { get; init; } = "torchsharp";

    /// <summary>Where TorchSharp ran the blocks: <c>cpu</c> or <c>cuda:N</c> (<see cref="Devices.Name"/>); tables from before devices are CPU ones.</summary>
    public string Device { get; init; } = "cpu";

    public required ModelConfig Config { get; init; }

    public required int Resolution { get; init; }

    public required int Batch { get; init; }

    public required int Threads { get; init; }

    /// <summary>Host name, CPU model and core count: a table is only valid where it was measured.</summary>
    public required string Machine { get; init; }

    public int Runs { get; init; }

    public DateTimeOffset Measured { get; init; }

    /// <summary>The whole model with every block original (median ms).</summary>
    public double ModelMs { get; init; }

    /// <summary>The whole model with every block merged (median ms, timed alternately with <see cref="ModelMs"/>).</summary>
    public double AllMergedMs { get; init; }

    public required IReadOnlyList<BlockLatency> Blocks { get; init; }

    /// <summary>Whether every block that can be dropped has its <see cref="BlockLatency.DroppedMs"/> (false for tables from before dropped forms).</summary>
    public bool HasDroppedForms { get; init; }

    /// <summary>The predicted latency with the blocks of <paramref name="merged"/> merged and the rest original.</summary>
    /// <exception cref="ArgumentException">A block is not in the table.</exception>
    public double Predict(IEnumerable<int> merged)
    {
        ArgumentNullException.ThrowIfNull(merged);
        var byIndex = Blocks.ToDictionary(b => b.Index);
        return ModelMs - merged.Distinct().Sum(i => byIndex.TryGetValue(i, out var b)
            ? b.SavingMs
            : throw new ArgumentException($"block {i} is not in the latency table (blocks {string.Join(",", byIndex.Keys)})", nameof(merged)));
    }

    /// <summary>
    /// The predicted latency with the blocks of <paramref name="merged"/> merged, those of
    /// <paramref name="dropped"/> dropped and the rest original.
    /// </summary>
    /// <exception cref="ArgumentException">A block is not in the table, or a dropped one has no dropped time.</exception>
    public double Predict(IEnumerable<int> merged, IEnumerable<int> dropped)
    {
        ArgumentNullException.ThrowIfNull(dropped);
        var drops = dropped.Distinct().ToList();
        if (drops.Count == 0)
        {
            return Predict(merged);
        }
        var byIndex = Blocks.ToDictionary(b => b.Index);
        return Predict(merged) - drops.Sum(i => byIndex.TryGetValue(i, out var b) && b.DropSavingMs is double saving
            ? saving
            : throw new ArgumentException($"block {i} has no dropped time in the latency table", nameof(dropped)));
    }

    /// <summary>
    /// The fewest blocks among <paramref name="candidates"/> whose merging can bring the predicted
    /// latency within <paramref name="budgetMs"/> (the largest savings first), or null if even all
    /// of them cannot. 0 when the unpruned model already fits. With <paramref name="orDrop"/> a block
    /// counts with the larger of its merge and drop savings (the mixed space).
    /// </summary>
    public int? FewestBlocksFor(double budgetMs, IEnumerable<int> candidates, bool orDrop = false)
    {
        var savings = Blocks.Where(b => candidates.Contains(b.Index))
            .Select(b => orDrop && b.DropSavingMs is double drop ? Math.Max(b.SavingMs, drop) : b.SavingMs).OrderDescending().ToList();
        var ms = ModelMs;
        for (var k = 0; ; k++)
        {
            if (ms <= budgetMs)
            {
                return k;
            }
            if (k == savings.Count || savings[k] <= 0)
            {
                return null;
            }
            ms -= savings[k];
        }
    }

    // What makes a table read from a file unusable: times that are not positive finite numbers
    // (a JSON 1e400 reads as infinity), settings out of range, a block listed twice. Null when usable.
    private string? Damage()
    {
        static bool Time(double ms) => double.IsFinite(ms) && ms > 0;
        if (!Time(ModelMs) || !Time(AllMergedMs))
        {
            return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"model_ms {ModelMs} and all_merged_ms {AllMergedMs} must be positive finite times");
        }
        if (Resolution < 1 || Batch < 1 || Threads < 1 || Blocks is null)
        {
            return "resolution, batch and threads must be ≥ 1 and blocks a list";
        }
        if (Blocks.FirstOrDefault(b => b is null || b.Index < 0 || !Time(b.OriginalMs) || !Time(b.MergedMs)) is { } bad)
        {
            return bad is null ? "a block is null"
                : string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"block {bad.Index}: original_ms {bad.OriginalMs} and merged_ms {bad.MergedMs} must be positive finite times of a block index ≥ 0");
        }
        return Blocks.GroupBy(b => b.Index).FirstOrDefault(g => g.Count() > 1) is { } twice ? $"block {twice.Key} is listed {twice.Count()} times" : null;
    }

    /// <summary>
    /// Whether this table was measured for these settings on this machine (on <paramref name="device"/>,
    /// default the CPU, and <paramref name="engine"/>, default TorchSharp).
    /// </summary>
    public bool IsFor(ModelConfig config, int resolution, int batch, int threads, Device? device = null, InferenceEngine engine = InferenceEngine.TorchSharp) =>
        Config == config && Resolution == resolution && Batch == batch && Threads == threads && Machine == ThisMachine()
        && Device == Devices.Name(device ?? Devices.Cpu) && Engine == InferenceEngines.Name(engine);

    /// <summary>
    /// Times every block of a fresh model of <paramref name="config"/> in its original and merged
    /// forms and, where its rule allows dropping it, its dropped form (the three in turns), on the
    /// block's real input shape, on <paramref name="engine"/>: in TorchSharp on <paramref name="device"/>
    /// (default the CPU), or in ONNX Runtime on the CPU, each form exported on its own
    /// (<see cref="OnnxExporter.ExportModuleToMemory"/>, checked against TorchSharp) and run in its
    /// own session. Then the whole model, original and with every block merged, on the same engine.
    /// </summary>
    /// <exception cref="ArgumentException">ONNX Runtime on a device other than the CPU.</exception>
    public static BlockLatencyTable Measure(ModelConfig config, int resolution, int batch, int warmup = 3, int runs = 20, Device? device = null,
        InferenceEngine engine = InferenceEngine.TorchSharp)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        Device on = device ?? Devices.Cpu;
        if (engine == InferenceEngine.OnnxRuntime && !Devices.IsCpu(on))
        {
            throw new ArgumentException($"ONNX Runtime runs on the CPU here: its latency table cannot be measured on {Devices.Name(on)}", nameof(device));
        }
        using var scope = NewDisposeScope();
        using var original = ModelRegistry.Create(config).MoveTo(on);
        using var merged = ModelRegistry.Create(config).MoveTo(on);
        var indices = original.Blocks.Where(b => BlockRules.Find(b.Module) is not null).Select(b => b.Index).ToList();
        foreach (var index in indices)
        {
            merged.Prune(index).Lambda = 1;
        }
        merged.eval();
        Merger.MergeAll(merged, [randn(Math.Min(batch, 2), config.InChans, resolution, resolution, generator: new Generator(0))]);
        original.eval();

        var inputs = BlockInputs(original, batch, resolution);
        var blocks = new List<BlockLatency>();
        using (no_grad())
        {
            foreach (var index in indices)
            {
                var a = (nn.Module<Tensor, Tensor>)original.Blocks[index].Module;
                List<nn.Module<Tensor, Tensor>> forms = [a, (nn.Module<Tensor, Tensor>)merged.Blocks[index].Module];
                // The dropped form (docs/METHOD.md#mixed) shares the original block's tensors and is never put in the model.
                if (original.CannotDrop(index) is null)
                {
                    forms.Add(BlockRules.For(a).Drop(a).MoveTo(on));
                }
                var times = engine == InferenceEngine.TorchSharp
                    ? TimeInTorchSharp(forms, inputs[index], on, batch, warmup, runs)
                    : TimeInOnnxRuntime(forms, original.Blocks[index].Path, inputs[index], resolution, batch, warmup, runs);
                blocks.Add(new BlockLatency(index, times[0], times[1], forms.Count > 2 ? times[2] : null));
            }
        }
        var whole = TimeModels([original, merged], engine, batch, resolution, warmup, runs);
        return new BlockLatencyTable
        {
            Engine = InferenceEngines.Name(engine),
            Config = config,
            Resolution = resolution,
            Batch = batch,
            Threads = get_num_threads(),
            Device = Devices.Name(on),
            Machine = ThisMachine(),
            Runs = runs,
            Measured = DateTimeOffset.UtcNow,
            ModelMs = whole[0],
            AllMergedMs = whole[1],
            Blocks = blocks,
            HasDroppedForms = true,
        };
    }

    /// <summary>
    /// The median latency of each of <paramref name="models"/> (one input size, eval mode) on
    /// <paramref name="engine"/> at <paramref name="batch"/>, the models timed in turns: in TorchSharp
    /// on their device, in ONNX Runtime each exported and checked first (<see cref="LatencyComparison"/>).
    /// What a table's prediction is checked against (docs/METHOD.md#latency-budget).
    /// </summary>
    public static double[] TimeModels(IReadOnlyList<ImageClassifier> models, InferenceEngine engine, int batch, int resolution, int warmup = 3, int runs = 20)
    {
        ArgumentNullException.ThrowIfNull(models);
        var results = LatencyComparison.Run([.. models.Select((m, i) => new BenchModel($"{i}", m))], [engine], resolution, [batch], warmup, runs);
        return [.. models.Select((_, i) => results.Single(r => r.Variant == $"{i}").Stats.MedianMs)];
    }

    // The block's forms in TorchSharp on its captured input, in turns; each run waits for the device.
    private static double[] TimeInTorchSharp(IReadOnlyList<nn.Module<Tensor, Tensor>> forms, Tensor x, Device on, int batch, int warmup, int runs)
    {
        Action Forward(nn.Module<Tensor, Tensor> block) => () =>
        {
            using var step = NewDisposeScope();
            block.call(x);
            Devices.Synchronize(on);
        };
        return [.. LatencyStats.MeasureInterleaved([.. forms.Select(Forward)], batch, warmup, runs).Select(t => t.MedianMs)];
    }

    // The block's forms each exported on its own and run in its own ONNX Runtime session, in turns, on
    // inputs of the captured input's shape. Every session pays the same per-run cost (binding the input,
    // allocating the output), and a table is used through differences (savings), so that cost cancels.
    private static double[] TimeInOnnxRuntime(IReadOnlyList<nn.Module<Tensor, Tensor>> forms, string path, Tensor x, int resolution, int batch, int warmup, int runs)
    {
        var threads = get_num_threads();
        var sessions = new List<OnnxRuntimeModel>();
        var prepared = new List<OnnxRuntimeModel.TimedRun>();
        try
        {
            foreach (var form in forms)
            {
                var (bytes, _) = OnnxExporter.ExportModuleToMemory(form, path, x, resolution, threads: threads);
                sessions.Add(OnnxRuntimeModel.Load(bytes, threads));
                prepared.Add(sessions[^1].Prepare(x.shape));
            }
            return [.. LatencyStats.MeasureInterleaved([.. prepared.Select(p => (Action)p.Run)], batch, warmup, runs).Select(t => t.MedianMs)];
        }
        finally
        {
            foreach (var p in prepared)
            {
                p.Dispose();
            }
            foreach (var session in sessions)
            {
                session.Dispose();
            }
        }
    }

    /// <summary>
    /// The table in <paramref name="path"/> if it was measured for these settings on this machine
    /// and engine (and, with <paramref name="needDropped"/>, has the dropped forms); otherwise
    /// measures one on <paramref name="engine"/> and <paramref name="device"/> (default the CPU) and
    /// writes it there (atomically). <paramref name="measured"/> tells which.
    /// </summary>
    public static BlockLatencyTable LoadOrMeasure(string path, ModelConfig config, int resolution, int batch, out bool measured, int runs = 20, Device? device = null,
        bool needDropped = false, InferenceEngine engine = InferenceEngine.TorchSharp)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (File.Exists(path) && Load(path) is { } cached && cached.IsFor(config, resolution, batch, get_num_threads(), device, engine)
            && (cached.HasDroppedForms || !needDropped))
        {
            measured = false;
            return cached;
        }
        // Checked before measuring, which takes a while: the folder may be a file or read-only.
        var folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        try
        {
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException(
                $"cannot cache the latency table in '{folder}': {AtomicFile.Reason(e)}; give another --latency-table, or set UPDP_CACHE to a folder that can be written", e);
        }
        var table = Measure(config, resolution, batch, runs: runs, device: device, engine: engine);
        Save(table, path);
        measured = true;
        return table;
    }

    /// <exception cref="InvalidDataException">The file is not a latency table (the message names it).</exception>
    public static BlockLatencyTable Load(string path)
    {
        RegularFile.Require(path, "latency table");
        try
        {
            var table = JsonSerializer.Deserialize<BlockLatencyTable>(File.ReadAllText(path), Json)
                ?? throw new InvalidDataException($"latency table '{path}' is empty");
            return table.Damage() is { } damage
                ? throw new InvalidDataException($"latency table '{path}' is damaged: {damage}; delete it to measure again")
                : table;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"latency table '{path}' is not valid: {e.Message}", e);
        }
    }

    public static void Save(BlockLatencyTable table, string path)
    {
        ArgumentNullException.ThrowIfNull(table);
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(table, Json));
    }

    /// <summary>
    /// Where tables are cached: <c>$UPDP_CACHE/latency</c>, else <c>$XDG_CACHE_HOME/updp/latency</c>, else
    /// <c>~/.cache/updp/latency</c>; one file per model configuration, resolution, batch and thread count
    /// (and device, other than the CPU, and engine, other than TorchSharp: <c>-onnxruntime</c>).
    /// </summary>
    public static string DefaultPath(ModelConfig config, int resolution, int batch, Device? device = null, InferenceEngine engine = InferenceEngine.TorchSharp)
    {
        ArgumentNullException.ThrowIfNull(config);
        var root = CacheFolder.Root;
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(config))))[..10];
        var where = device is null || Devices.IsCpu(device) ? "" : "-" + Devices.Name(device).Replace(":", "", StringComparison.Ordinal);
        var on = engine == InferenceEngine.TorchSharp ? "" : "-" + InferenceEngines.Name(engine);
        return Path.Combine(root, "latency", $"{config.Name}-{hash}-r{resolution}-b{batch}-t{get_num_threads()}{where}{on}.json");
    }

    /// <summary>Host name, CPU model and logical cores.</summary>
    public static string ThisMachine()
    {
        var cpu = "unknown CPU";
        if (File.Exists("/proc/cpuinfo"))
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
        }
        return $"{Environment.MachineName} / {cpu} / {Environment.ProcessorCount} cores";
    }

    // Each block's input for one forward pass of random images, captured by forward hooks.
    private static Dictionary<int, Tensor> BlockInputs(ImageClassifier model, int batch, int resolution)
    {
        var inputs = new Dictionary<int, Tensor>();
        var removers = new List<Action>();
        foreach (var block in model.Blocks)
        {
            var index = block.Index;
            var hook = ((nn.Module<Tensor, Tensor>)block.Module).register_forward_hook((_, input, output) =>
            {
                inputs[index] = input.detach().clone();
                return output;
            });
            removers.Add(hook.remove);
        }
        try
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            model.call(randn(batch, model.Config.InChans, resolution, resolution, generator: new Generator(1)).OnDevice(Devices.Of(model)));
            foreach (var x in inputs.Values)
            {
                x.MoveToOuterDisposeScope();
            }
        }
        finally
        {
            foreach (var remove in removers)
            {
                remove();
            }
        }
        return inputs;
    }
}
