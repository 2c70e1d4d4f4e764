using Updp.Export;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Benchmarks;

/// <summary>Where a model runs for a latency measurement.</summary>
public enum InferenceEngine
{
    /// <summary>The TorchSharp module itself, eval mode, no gradients, on its device.</summary>
    TorchSharp,

    /// <summary>The model exported by <see cref="OnnxExporter"/> (checked for parity first) in ONNX Runtime on the CPU.</summary>
    OnnxRuntime,
}

/// <summary>The names of the engines on command lines and in files: <c>torchsharp</c> and <c>onnxruntime</c>.</summary>
public static class InferenceEngines
{
    /// <summary><c>torchsharp</c> or <c>onnxruntime</c>.</summary>
    public static string Name(InferenceEngine engine) => engine switch
    {
        InferenceEngine.TorchSharp => "torchsharp",
        InferenceEngine.OnnxRuntime => "onnxruntime",
        _ => throw new ArgumentOutOfRangeException(nameof(engine), engine, null),
    };

    /// <summary>The engine named <paramref name="name"/> (<see cref="Name"/>, any case; <c>ort</c> for ONNX Runtime), or null.</summary>
    public static InferenceEngine? Parse(string? name) => name?.Trim().ToLowerInvariant() switch
    {
        "torchsharp" => InferenceEngine.TorchSharp,
        "onnxruntime" or "ort" => InferenceEngine.OnnxRuntime,
        _ => null,
    };
}

/// <summary>One model of a comparison; the first one of a comparison is the reference for speed-ups.</summary>
/// <param name="Variant">What the rows call it, e.g. <c>original</c> or <c>merged</c>.</param>
public sealed record BenchModel(string Variant, ImageClassifier Model);

/// <summary>A latency measurement of one model on one engine at one batch size and resolution.</summary>
/// <param name="Speedup">
/// The median, over the rounds of one interleaved series, of the reference model's time over this
/// model's (<see cref="LatencyStats.PairedSpeedup"/>); null for the reference.
/// </param>
/// <param name="Macs">Multiply-accumulates of one image at this resolution (<see cref="ModelProfiler"/>).</param>
public sealed record BenchResult(string Variant, InferenceEngine Engine, int Resolution, int Batch, int Threads, LatencyStats Stats, double? Speedup, long Macs);

/// <summary>
/// Inference latency of several models of one input size, on several engines and batch sizes, with
/// the same number of intra-op threads for libtorch and ONNX Runtime. The models of one engine and
/// batch size are timed in turns (<see cref="LatencyStats.MeasureInterleaved"/>), so their ratio is
/// measured under the same load.
/// </summary>
public static class LatencyComparison
{
    public static IReadOnlyList<BenchResult> Run(IReadOnlyList<BenchModel> models, IReadOnlyList<InferenceEngine> engines, int resolution,
        IReadOnlyList<int> batches, int warmup, int runs)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentNullException.ThrowIfNull(engines);
        ArgumentNullException.ThrowIfNull(batches);
        if (models.Count == 0)
        {
            throw new ArgumentException("no model to measure", nameof(models));
        }
        var n = get_num_threads();
        var macs = models.Select(m => ModelProfiler.Profile(m.Model, resolution).Macs).ToList();
        var results = new List<BenchResult>();
        foreach (var engine in engines.Distinct())
        {
            using var runners = new Runners(models, engine, resolution, n);
            foreach (var batch in batches)
            {
                var prepared = runners.Prepare(batch);
                try
                {
                    var stats = LatencyStats.MeasureInterleaved(prepared.Select(p => (Action)p.Run).ToList(), batch, warmup, runs, out var times);
                    for (var i = 0; i < models.Count; i++)
                    {
                        results.Add(new BenchResult(models[i].Variant, engine, resolution, batch, n, stats[i],
                            i == 0 ? null : LatencyStats.PairedSpeedup(times[0], times[i]), macs[i]));
                    }
                }
                finally
                {
                    foreach (var p in prepared)
                    {
                        p.Dispose();
                    }
                }
            }
        }
        return results;
    }

    /// <summary>
    /// A copy of <paramref name="model"/> (same configuration and weights, same device) with <paramref name="blocks"/>
    /// pruned at λ = 1 and merged, the merge verified on a random batch: what a pruning run would
    /// deploy, for timing. The batch norms keep their current statistics.
    /// </summary>
    /// <exception cref="ArgumentException">A block index is out of range, listed twice, or the block is not original.</exception>
    public static ImageClassifier MergedCopy(ImageClassifier model, IReadOnlyList<int> blocks, int resolution)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(blocks);
        var count = model.Blocks.Count;
        foreach (var i in blocks.Where(i => i < 0 || i >= count))
        {
            throw new ArgumentException($"block {i} is out of range: {model.Config.Name} has {count} prunable blocks (0–{count - 1})");
        }
        if (blocks.GroupBy(i => i).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw new ArgumentException($"block {twice.Key} is listed more than once");
        }
        foreach (var i in blocks.Where(i => model.FormOf(i) != BlockForm.Original))
        {
            throw new ArgumentException($"block {i} ({model.Blocks[i].Path}) is already {model.FormOf(i).ToString().ToLowerInvariant()}");
        }
        var copy = PrunedModels.Create(model.Config, null, Devices.Of(model));
        try
        {
            using var scope = NewDisposeScope();
            PruningState.Of(model).ApplyTo(copy);
            copy.load_state_dict(model.state_dict());
            foreach (var index in blocks)
            {
                copy.Prune(index).Lambda = 1;
            }
            Merger.MergeAll(copy, [randn(2, model.Config.InChans, resolution, resolution, generator: new Generator(0))]);
            copy.eval();
            return copy;
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }

    private interface IRun : IDisposable
    {
        void Run();
    }

    // One runner per model and engine: the ONNX sessions are built (and checked) once per resolution.
    private sealed class Runners : IDisposable
    {
        private readonly IReadOnlyList<BenchModel> _models;
        private readonly int _resolution;
        private readonly List<OnnxRuntimeModel>? _sessions;

        public Runners(IReadOnlyList<BenchModel> models, InferenceEngine engine, int resolution, int threads)
        {
            _models = models;
            _resolution = resolution;
            if (engine != InferenceEngine.OnnxRuntime)
            {
                return;
            }
            _sessions = [];
            try
            {
                foreach (var m in models)
                {
                    using var scope = NewDisposeScope();
                    var check = randn(2, m.Model.Config.InChans, resolution, resolution, generator: new Generator(0));
                    var (bytes, _) = OnnxExporter.ExportToMemory(m.Model, [check], threads: threads);
                    _sessions.Add(OnnxRuntimeModel.Load(bytes, threads));
                }
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        public List<IRun> Prepare(int batch)
        {
            if (_sessions is null)
            {
                return _models.Select(m => (IRun)new TorchSharpRun(m.Model, batch, _resolution)).ToList();
            }
            return _models.Select((m, i) => (IRun)new OnnxRun(_sessions[i].Prepare([batch, m.Model.Config.InChans, _resolution, _resolution]))).ToList();
        }

        public void Dispose()
        {
            foreach (var s in _sessions ?? [])
            {
                s.Dispose();
            }
        }
    }

    // Each run waits for the model's device, so queued CUDA work is timed where it is done.
    private sealed class TorchSharpRun : IRun
    {
        private readonly ImageClassifier _model;
        private readonly Tensor _input;
        private readonly Device _device;

        public TorchSharpRun(ImageClassifier model, int batch, int resolution)
        {
            _model = model;
            _model.eval();
            _device = Devices.Of(model);
            _input = randn(batch, model.Config.InChans, resolution, resolution).MovedTo(_device).DetachFromDisposeScope();
        }

        public void Run()
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            _model.call(_input);
            Devices.Synchronize(_device);
        }

        public void Dispose() => _input.Dispose();
    }

    private sealed class OnnxRun(OnnxRuntimeModel.TimedRun run) : IRun
    {
        public void Run() => run.Run();

        public void Dispose() => run.Dispose();
    }
}
