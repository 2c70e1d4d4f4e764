using System.Globalization;
using System.Text;
using System.Text.Json;
using Updp.Benchmarks;
using Updp.Checkpoints;
using Updp.Export;
using Updp.Models;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>What <see cref="PrunePipeline"/> needs (<c>updp prune</c>): the four stages' settings in one place.</summary>
public sealed record PruneOptions
{
    /// <summary>Bad-image handling and the decoded cache for image-folder data (preprocessing comes from the checkpoint).</summary>
    public Data.DataOptions DataOptions { get; init; } = new();

    /// <summary>The baseline (an Updp checkpoint with sidecar, every block original).</summary>
    public required string Checkpoint { get; init; }

    /// <summary><c>fashion-mnist</c>, <c>mnist</c> or a directory with the four idx files.</summary>
    public required string Data { get; init; }

    /// <summary>The run directory; see <see cref="PrunePipeline"/> for its layout.</summary>
    public required string OutDir { get; init; }

    /// <summary>K: how many blocks the pruned model loses; 0 with <see cref="LatencyBudgetMs"/>: the fewest that can fit it.</summary>
    public required int Blocks { get; init; }

    /// <summary>
    /// A latency budget (ms per batch of <see cref="LatencyBatch"/>): the search scores only subsets
    /// predicted to fit it by this machine's per-block latency table; the merged model is timed again.
    /// </summary>
    public double? LatencyBudgetMs { get; init; }

    public int LatencyBatch { get; init; } = 1;

    /// <summary>The per-block latency table file; null for <see cref="Benchmarks.BlockLatencyTable.DefaultPath"/>.</summary>
    public string? LatencyTable { get; init; }

    /// <summary>How stage 3 prunes the chosen blocks.</summary>
    public FinetuneMethod Method { get; init; } = FinetuneMethod.Updp;

    /// <summary>K_max of the supernet; null for K.</summary>
    public int? MaxPruned { get; init; }

    /// <summary>
    /// A supernet trained before (stage 1's <c>supernet.safetensors</c>, e.g. of another run with a
    /// larger K_max) to search and fine-tune from; stage 1 is then skipped. Null trains one in OutDir.
    /// </summary>
    public string? SupernetCheckpoint { get; init; }

    /// <summary>The blocks that may be pruned; null for all.</summary>
    public IReadOnlyList<int>? Candidates { get; init; }

    /// <summary>Stage 1's recipe; its seed also seeds the search and stage 3 unless they say otherwise.</summary>
    public TrainOptions Supernet { get; init; } = new() { Epochs = 3, LearningRate = FinetuneOptions.FineTuningLearningRate };

    public SearchStrategy Search { get; init; } = new();

    /// <summary>Score subsets on the first N validation images only; null for the whole split.</summary>
    public int? SearchValidationLimit { get; init; }

    /// <summary>Stage 3's recipe.</summary>
    public TrainOptions Finetune { get; init; } = FinetuneOptions.DefaultRecipe;

    /// <summary>λ ramp fraction of stage 3 (<see cref="FinetuneMethod.Updp"/>).</summary>
    public double Ramp { get; init; } = LambdaRamp.DefaultRamp;

    /// <summary>Distillation in stages 1 and 3; null for none.</summary>
    public DistillationOptions? Distillation { get; init; }

    public int CalibrationBatches { get; init; } = 10;

    public int CalibrationBatchSize { get; init; } = 128;

    /// <summary>Validation images held out; null takes the baseline's sidecar (else 5000).</summary>
    public int? ValidationCount { get; init; }

    /// <summary>Train on the first N training images only (quick runs and tests).</summary>
    public int? TrainLimit { get; init; }

    public int EvalBatchSize { get; init; } = 256;

    /// <summary>Real test images the merge is verified on (plus one random batch).</summary>
    public int MergeCheckImages { get; init; } = 256;

    /// <summary>Timed forward passes per latency measurement (after <see cref="LatencyWarmup"/> untimed ones).</summary>
    public int LatencyRuns { get; init; } = 20;

    public int LatencyWarmup { get; init; } = 3;
}

/// <summary>The four stages, in order.</summary>
public enum PruneStage
{
    Supernet,
    Search,
    Finetune,
    Merge,
}

/// <summary>What a progress report says.</summary>
public enum PruneEvent
{
    /// <summary>The stage starts (or resumes).</summary>
    Started,

    /// <summary>The stage had finished in an earlier run; its output is reused.</summary>
    Skipped,

    /// <summary>A training step (<see cref="PruneProgress.Train"/>) or a scored subset (<see cref="PruneProgress.Search"/>).</summary>
    Step,

    /// <summary>A training epoch ended (<see cref="PruneProgress.Epoch"/>).</summary>
    Epoch,

    Finished,
}

/// <summary>One progress report of <see cref="PrunePipeline.Run"/>; <see cref="Message"/> describes Started, Skipped and Finished.</summary>
public sealed record PruneProgress(PruneStage Stage, PruneEvent Event, string? Message = null,
    TrainProgress? Train = null, SearchProgress? Search = null, EpochResult? Epoch = null);

/// <summary>The pipeline's summary, written to <c>metrics.json</c> (snake_case keys).</summary>
public sealed record PruneMetrics
{
    public string Model { get; init; } = "";

    public string Method { get; init; } = "";

    /// <summary>The teacher checkpoint stages 1 and 3 were distilled from; null for none.</summary>
    public string? Distill { get; init; }

    /// <summary>S, the pruned (merged or dropped) blocks.</summary>
    public IReadOnlyList<int> Blocks { get; init; } = [];

    /// <summary>Test top-1 of the baseline.</summary>
    public double BaselineTop1 { get; init; }

    /// <summary>Test top-1 of the fine-tuned pruned model (the merged model computes the same function, verified).</summary>
    public double Top1 { get; init; }

    /// <summary>Validation top-1 of the search's best subset, on the supernet.</summary>
    public double SearchValTop1 { get; init; }

    public long BaselineParams { get; init; }

    public long BaselineMacs { get; init; }

    /// <summary>Parameters of the merged model.</summary>
    public long Params { get; init; }

    /// <summary>MACs of the merged model.</summary>
    public long Macs { get; init; }

    public double MergeMaxAbsDiff { get; init; }

    public double MergeTolerance { get; init; }

    public int InputSize { get; init; }

    /// <summary>Intra-op threads during the latency measurements.</summary>
    public int Threads { get; init; }

    /// <summary>Median TorchSharp CPU inference latency (ms), baseline and merged, batch 1 and 32.</summary>
    public double BaselineLatencyMsB1 { get; init; }

    public double LatencyMsB1 { get; init; }

    public double BaselineLatencyMsB32 { get; init; }

    public double LatencyMsB32 { get; init; }

    /// <summary>Baseline latency / merged latency at batch 1 (median of the ratios of runs made back to back, <see cref="LatencyStats.PairedSpeedup"/>).</summary>
    public double Speedup { get; init; }

    /// <summary>Baseline latency / merged latency at batch 32.</summary>
    public double SpeedupB32 { get; init; }

    /// <summary>The latency budget (ms at <see cref="LatencyBatch"/>); null without one.</summary>
    public double? LatencyBudgetMs { get; init; }

    public int? LatencyBatch { get; init; }

    /// <summary>The merged subset's latency predicted by the per-block table.</summary>
    public double? PredictedLatencyMs { get; init; }

    /// <summary>The fine-tuned merged model, timed at <see cref="LatencyBatch"/> alternately with the baseline.</summary>
    public double? MeasuredLatencyMs { get; init; }

    /// <summary>max |Δ| / max(1, max |y|) of <c>model.onnx</c> in ONNX Runtime against the merged model in TorchSharp, on test images.</summary>
    public double OnnxRelativeDiff { get; init; }

    /// <summary>Why no model.onnx was written (a module kind without an ONNX emitter); the ONNX fields are then NaN.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? OnnxSkipped { get; init; }

    /// <summary>Median ONNX Runtime CPU inference latency (ms), baseline and merged, batch 1 and 32 (same threads).</summary>
    public double OnnxBaselineLatencyMsB1 { get; init; }

    public double OnnxLatencyMsB1 { get; init; }

    public double OnnxBaselineLatencyMsB32 { get; init; }

    public double OnnxLatencyMsB32 { get; init; }

    public double OnnxSpeedup { get; init; }

    public double OnnxSpeedupB32 { get; init; }
}

/// <summary>What <see cref="PrunePipeline.Run"/> did.</summary>
/// <param name="Skipped">Stages that had finished in an earlier run and were not run again.</param>
public sealed record PruneResult(PruneMetrics Metrics, IReadOnlyList<PruneStage> Skipped);

/// <summary>
/// The whole method (docs/METHOD.md#the-four-stages) in one run directory: supernet → search → fine-tune → merge, then
/// test top-1, costs and TorchSharp latency of baseline and merged model. Layout of OutDir:
/// <c>supernet/</c> (stage 1, <c>supernet.safetensors</c>), <c>search.json</c> (stage 2),
/// <c>finetune/</c> (stage 3, <c>pruned.safetensors</c>), <c>merged.safetensors</c> (stage 4),
/// <c>model.onnx</c> (the merged model, checked in ONNX Runtime), <c>metrics.json</c> and <c>report.md</c>. Every file is written atomically and a stage counts as
/// finished when its final file exists (training stages: their <c>metrics.json</c>, written last),
/// so running again after an interruption skips the finished stages and resumes an interrupted
/// training stage from its last epoch.
/// </summary>
public static class PrunePipeline
{
    public const string MetricsFile = "metrics.json";
    public const string ReportFile = "report.md";
    public const string MergedFile = "merged.safetensors";
    public const string OnnxFile = "model.onnx";

    public static string SupernetDir(string outDir) => Path.Combine(outDir, "supernet");

    public static string SearchFile(string outDir) => Path.Combine(outDir, SubnetSearch.ResultFile);

    public static string FinetuneDir(string outDir) => Path.Combine(outDir, "finetune");

    public static PruneResult Run(PruneOptions options, IProgress<PruneProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var outDir = options.OutDir;
        var (candidates, inputSize, config) = Check(options);
        LatencyBudget? latency = null;
        if (options.LatencyBudgetMs is double budgetMs)
        {
            latency = LatencyBudget.Create(config, inputSize, budgetMs, options.LatencyBatch, options.LatencyTable, out var measured);
            progress?.Report(new PruneProgress(PruneStage.Search, PruneEvent.Started,
                $"{(measured ? "measured" : "reused")} the latency table {latency.TablePath}: unpruned {latency.Table.ModelMs:F2} ms at batch {options.LatencyBatch}"));
            if (options.Blocks == 0)
            {
                options = options with { Blocks = latency.FewestBlocks(candidates) };
            }
        }
        var maxPruned = options.MaxPruned ?? options.Blocks;
        var skipped = new List<PruneStage>();
        void Report(PruneStage stage, PruneEvent e, string message) => progress?.Report(new PruneProgress(stage, e, message));
        IProgress<TrainProgress> TrainProgressOf(PruneStage stage) =>
            new Relay<TrainProgress>(p => progress?.Report(new PruneProgress(stage, PruneEvent.Step, Train: p)));
        Action<EpochResult> EpochOf(PruneStage stage) => e => progress?.Report(new PruneProgress(stage, PruneEvent.Epoch, Epoch: e));

        // Stage 1.
        var supernetDir = SupernetDir(outDir);
        var supernet = options.SupernetCheckpoint ?? Path.Combine(supernetDir, SupernetTraining.CheckpointName + Checkpoints.Checkpoint.WeightsExtension);
        if (options.SupernetCheckpoint is not null)
        {
            skipped.Add(PruneStage.Supernet);
            Report(PruneStage.Supernet, PruneEvent.Skipped, $"using the given supernet {supernet}");
        }
        else if (File.Exists(supernet) && File.Exists(Path.Combine(supernetDir, MetricsFile)))
        {
            skipped.Add(PruneStage.Supernet);
            Report(PruneStage.Supernet, PruneEvent.Skipped, $"reusing {supernet}");
        }
        else
        {
            Report(PruneStage.Supernet, PruneEvent.Started, $"K_max {maxPruned}, {options.Supernet.Epochs} epochs");
            var result = SupernetTraining.Run(new SupernetOptions
            {
                Checkpoint = options.Checkpoint,
                Data = options.Data,
                DataOptions = options.DataOptions,
                OutDir = supernetDir,
                MaxPruned = maxPruned,
                Candidates = candidates,
                Train = options.Supernet,
                Distillation = options.Distillation,
                CalibrationBatches = options.CalibrationBatches,
                CalibrationBatchSize = options.CalibrationBatchSize,
                ValidationCount = options.ValidationCount,
                TrainLimit = options.TrainLimit,
                Resume = true,
                EvalBatchSize = options.EvalBatchSize,
            }, TrainProgressOf(PruneStage.Supernet), EpochOf(PruneStage.Supernet), cancellation);
            Report(PruneStage.Supernet, PruneEvent.Finished, $"val top-1 {result.ValTop1:P2} with every block original");
        }

        // Stage 2.
        var searchFile = SearchFile(outDir);
        if (File.Exists(searchFile))
        {
            skipped.Add(PruneStage.Search);
            Report(PruneStage.Search, PruneEvent.Skipped, $"reusing {searchFile}");
        }
        else
        {
            Report(PruneStage.Search, PruneEvent.Started, $"K = {options.Blocks}");
            SubnetSearch.Run(new SearchOptions
            {
                Checkpoint = supernet,
                Data = options.Data,
                DataOptions = options.DataOptions,
                Blocks = options.Blocks,
                OutDir = outDir,
                Candidates = candidates,
                Strategy = options.Search,
                CalibrationBatches = options.CalibrationBatches,
                CalibrationBatchSize = options.CalibrationBatchSize,
                ValidationLimit = options.SearchValidationLimit,
                Latency = latency,
                EvalBatchSize = options.EvalBatchSize,
            }, new Relay<SearchProgress>(p => progress?.Report(new PruneProgress(PruneStage.Search, PruneEvent.Step, Search: p))), cancellation);
        }
        var (chosen, searchTop1) = ReadSearch(searchFile, options.Blocks);
        Report(PruneStage.Search, PruneEvent.Finished, $"best blocks {string.Join(",", chosen)}: val top-1 {searchTop1:P2}");

        // Stage 3.
        var method = options.Method.ToString().ToLowerInvariant();
        var finetuneDir = FinetuneDir(outDir);
        var finetuneMetrics = Path.Combine(finetuneDir, MetricsFile);
        var pruned = Path.Combine(finetuneDir, ProgressiveFinetune.CheckpointName + Checkpoints.Checkpoint.WeightsExtension);
        if (File.Exists(pruned) && File.Exists(finetuneMetrics))
        {
            skipped.Add(PruneStage.Finetune);
            Report(PruneStage.Finetune, PruneEvent.Skipped, $"reusing {pruned}");
        }
        else
        {
            Report(PruneStage.Finetune, PruneEvent.Started, $"{method} on blocks {string.Join(",", chosen)}, {options.Finetune.Epochs} epochs");
            ProgressiveFinetune.Run(new FinetuneOptions
            {
                Checkpoint = supernet,
                Data = options.Data,
                DataOptions = options.DataOptions,
                OutDir = finetuneDir,
                Blocks = chosen,
                Method = options.Method,
                Init = FinetuneInit.Supernet,
                Ramp = options.Ramp,
                Train = options.Finetune,
                Distillation = options.Distillation,
                CalibrationBatches = options.CalibrationBatches,
                CalibrationBatchSize = options.CalibrationBatchSize,
                TrainLimit = options.TrainLimit,
                Resume = true,
                EvalBatchSize = options.EvalBatchSize,
            }, TrainProgressOf(PruneStage.Finetune), EpochOf(PruneStage.Finetune), cancellation);
        }
        var top1 = ReadFinetune(finetuneMetrics, method, chosen);
        Report(PruneStage.Finetune, PruneEvent.Finished, $"test top-1 {top1:P2}");

        // Stage 4, with the measurements.
        var merged = Path.Combine(outDir, MergedFile);
        var metricsFile = Path.Combine(outDir, MetricsFile);
        var reportFile = Path.Combine(outDir, ReportFile);
        if (File.Exists(merged) && File.Exists(metricsFile) && File.Exists(reportFile)
            && (File.Exists(Path.Combine(outDir, OnnxFile)) || RunDirectory.ReadJson<PruneMetrics>(metricsFile).OnnxSkipped is not null))
        {
            skipped.Add(PruneStage.Merge);
            Report(PruneStage.Merge, PruneEvent.Skipped, $"reusing {merged} and {metricsFile}");
            return new PruneResult(RunDirectory.ReadJson<PruneMetrics>(metricsFile), skipped);
        }
        Report(PruneStage.Merge, PruneEvent.Started, "merge, verify, evaluate the baseline, time both models");
        var metrics = MergeAndMeasure(options, pruned, merged, inputSize, method, chosen, top1, searchTop1, latency);
        RunDirectory.WriteJson(metricsFile, metrics);
        AtomicFile.WriteAllText(reportFile, RenderReport(options, metrics));
        Report(PruneStage.Merge, PruneEvent.Finished, $"max |Δ| {metrics.MergeMaxAbsDiff:G3}, speed-up {metrics.Speedup:F2}× at batch 1");
        return new PruneResult(metrics, skipped);
    }

    // Fails on bad input before any stage runs (and before anything is written).
    private static (int[] Candidates, int InputSize, ModelConfig Config) Check(PruneOptions options)
    {
        var loaded = StageData.LoadCheckpoint(options.Checkpoint);
        using var model = loaded.Model;
        // The drop comparison can only remove blocks that keep the shape of their input.
        var droppable = model.Blocks.Select(b => b.Index).Where(i => options.Method != FinetuneMethod.Drop || model.CannotDrop(i) is null);
        var candidates = StageData.CheckBlocks(model, options.Candidates ?? droppable, "the candidate blocks");
        if (options.Method == FinetuneMethod.Drop && candidates.Select(i => (Index: i, Reason: model.CannotDrop(i))).FirstOrDefault(c => c.Reason is not null) is { Reason: { } reason } c)
        {
            throw new ArgumentException($"method drop: candidate {BlockPruning.Describe(model.Blocks[c.Index])} cannot be dropped: {reason}");
        }
        if ((options.Blocks < 1 && !(options.Blocks == 0 && options.LatencyBudgetMs is not null)) || options.Blocks > candidates.Length)
        {
            throw new ArgumentException(
                $"K = {options.Blocks} blocks to prune: expected 1–{candidates.Length}, the number of candidate blocks of '{options.Checkpoint}'");
        }
        if (options.MaxPruned is int kMax && (kMax < options.Blocks || kMax > candidates.Length))
        {
            throw new ArgumentException($"K_max = {kMax}: expected {options.Blocks}–{candidates.Length} (at least K, at most the candidate blocks)");
        }
        if (model.PrunedBlocks().Any() || model.Blocks.Any(b => model.FormOf(b.Index) != BlockForm.Original))
        {
            throw new ArgumentException($"'{options.Checkpoint}' has pruned, merged or dropped blocks; the pipeline starts from a baseline");
        }
        if (options.SupernetCheckpoint is { } given)
        {
            var supernet = StageData.LoadCheckpoint(given);
            using var supernetModel = supernet.Model;
            if (supernetModel.Config != model.Config || !supernetModel.PrunedBlocks().Any())
            {
                throw new ArgumentException($"supernet '{given}': expected a supernet of the baseline's model ({model.Config.Name}) with blocks in progressive form");
            }
        }
        ArgumentOutOfRangeException.ThrowIfNegative(options.MergeCheckImages, nameof(options.MergeCheckImages));
        var inputSize = loaded.Meta?.Preprocessing?.InputSize
            ?? throw new ArgumentException($"'{options.Checkpoint}' has no preprocessing in its sidecar; the pipeline needs a checkpoint written by `updp train`");
        return (candidates, inputSize, model.Config);
    }

    // The best subset of search.json, after checking it was searched for this K.
    private static (int[] Blocks, double ValTop1) ReadSearch(string path, int k)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        var searchedK = root.GetProperty("pruned_blocks").GetInt32();
        if (searchedK != k)
        {
            throw new ArgumentException($"'{path}' ranks subsets of {searchedK} blocks, not {k}: use another output directory or remove it");
        }
        var best = root.GetProperty("candidates")[0];
        return ([.. best.GetProperty("blocks").EnumerateArray().Select(b => b.GetInt32())], best.GetProperty("val_top1").GetDouble());
    }

    // The test top-1 of stage 3's metrics.json, after checking it fine-tuned this method and subset.
    private static double ReadFinetune(string path, string method, IReadOnlyList<int> blocks)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        var done = root.GetProperty("method").GetString();
        var doneBlocks = root.GetProperty("blocks").EnumerateArray().Select(b => b.GetInt32()).ToList();
        if (done != method || !doneBlocks.SequenceEqual(blocks))
        {
            throw new ArgumentException(
                $"'{path}' fine-tuned {done} on blocks {string.Join(",", doneBlocks)}, not {method} on {string.Join(",", blocks)}: use another output directory or remove it");
        }
        return root.GetProperty("top1").GetDouble();
    }

    private static PruneMetrics MergeAndMeasure(PruneOptions options, string pruned, string merged, int inputSize, string method,
        IReadOnlyList<int> chosen, double top1, double searchTop1, LatencyBudget? latency)
    {
        var baselineLoaded = StageData.LoadCheckpoint(options.Checkpoint);
        using var baseline = baselineLoaded.Model;
        var split = StageData.ResolveSplit(options.ValidationCount, null, baselineLoaded.Meta, options.Supernet.Seed);
        var data = StageData.LoadData(options.Data, split, options.TrainLimit, baselineLoaded.Meta, baseline, options.DataOptions);

        double maxAbsDiff, tolerance;
        if (File.Exists(merged))
        {
            // Merged in an earlier run that stopped before the measurements.
            var meta = Checkpoints.Checkpoint.ReadMeta(merged);
            maxAbsDiff = meta?.Metrics.GetValueOrDefault("merge_max_abs_diff") ?? double.NaN;
            tolerance = meta?.Metrics.GetValueOrDefault("merge_tolerance") ?? double.NaN;
        }
        else
        {
            var loaded = StageData.LoadCheckpoint(pruned);
            using var model = loaded.Model;
            MergeReport report;
            using (NewDisposeScope())
            {
                var inputs = TrainingRun.EvalLoader(data.Splits.Test.Take(Math.Max(options.MergeCheckImages, 1)), data.Preprocessing, 128)
                    .Epoch(0).Select(b => b.Images).ToList();
                report = Merger.MergeAll(model, inputs);
            }
            var metrics = new Dictionary<string, double>(loaded.Meta?.Metrics ?? new Dictionary<string, double>())
            {
                ["merge_max_abs_diff"] = report.MaxAbsDiff,
                ["merge_tolerance"] = report.Tolerance,
            };
            Checkpoints.Checkpoint.Save(model, merged,
                PrunedModels.Describe(model, (loaded.Meta ?? new CheckpointMeta()) with { Metrics = metrics, Created = null }));
            (maxAbsDiff, tolerance) = (report.MaxAbsDiff, report.Tolerance);
        }

        var baselineTop1 = Evaluator.Evaluate(baseline, TrainingRun.EvalLoader(data.Splits.Test, data.Preprocessing, options.EvalBatchSize).Epoch(0)).Top1;
        var mergedLoaded = StageData.LoadCheckpoint(merged);
        using var mergedModel = mergedLoaded.Model;
        var baselineProfile = ModelProfiler.Profile(baseline, inputSize);
        var mergedProfile = ModelProfiler.Profile(mergedModel, inputSize);
        OnnxExportReport? onnx = null;
        string? onnxSkipped = null;
        using (NewDisposeScope())
        {
            var inputs = TrainingRun.EvalLoader(data.Splits.Test.Take(Math.Max(options.MergeCheckImages, 1)), data.Preprocessing, 128)
                .Epoch(0).Select(b => b.Images).ToList();
            try
            {
                onnx = OnnxExporter.Export(mergedModel, Path.Combine(Path.GetDirectoryName(merged)!, OnnxFile), inputs);
            }
            catch (NotSupportedException e) when (e.Message.Contains("no emitter", StringComparison.Ordinal))
            {
                // A family without ONNX emitters yet: the pipeline's result stands, the report says why there is no model.onnx.
                onnxSkipped = e.Message;
            }
        }
        // Both models in every engine that can run them, timed in turns at the same thread count.
        InferenceEngine[] engines = onnx is null ? [InferenceEngine.TorchSharp] : [InferenceEngine.TorchSharp, InferenceEngine.OnnxRuntime];
        var timings = LatencyComparison.Run([new("baseline", baseline), new("merged", mergedModel)],
            engines, inputSize, [1, 32], options.LatencyWarmup, options.LatencyRuns);
        double Latency(InferenceEngine engine, string variant, int batch) =>
            timings.SingleOrDefault(t => t.Engine == engine && t.Variant == variant && t.Batch == batch)?.Stats.MedianMs ?? double.NaN;
        double Speedup(InferenceEngine engine, int batch) =>
            timings.SingleOrDefault(t => t.Engine == engine && t.Variant == "merged" && t.Batch == batch)?.Speedup ?? double.NaN;
        var (b1, m1, b32, m32) = (Latency(InferenceEngine.TorchSharp, "baseline", 1), Latency(InferenceEngine.TorchSharp, "merged", 1),
            Latency(InferenceEngine.TorchSharp, "baseline", 32), Latency(InferenceEngine.TorchSharp, "merged", 32));
        var (ob1, om1, ob32, om32) = (Latency(InferenceEngine.OnnxRuntime, "baseline", 1), Latency(InferenceEngine.OnnxRuntime, "merged", 1),
            Latency(InferenceEngine.OnnxRuntime, "baseline", 32), Latency(InferenceEngine.OnnxRuntime, "merged", 32));
        return new PruneMetrics
        {
            Model = baseline.Config.Name,
            Method = method,
            Distill = options.Distillation?.Teacher,
            Blocks = chosen,
            BaselineTop1 = baselineTop1,
            Top1 = top1,
            SearchValTop1 = searchTop1,
            BaselineParams = baselineProfile.Params,
            BaselineMacs = baselineProfile.Macs,
            Params = mergedProfile.Params,
            Macs = mergedProfile.Macs,
            MergeMaxAbsDiff = maxAbsDiff,
            MergeTolerance = tolerance,
            InputSize = inputSize,
            Threads = get_num_threads(),
            BaselineLatencyMsB1 = b1,
            LatencyMsB1 = m1,
            BaselineLatencyMsB32 = b32,
            LatencyMsB32 = m32,
            Speedup = Speedup(InferenceEngine.TorchSharp, 1),
            SpeedupB32 = Speedup(InferenceEngine.TorchSharp, 32),
            OnnxRelativeDiff = onnx?.Parity.RelativeDiff ?? double.NaN,
            OnnxSkipped = onnxSkipped,
            OnnxBaselineLatencyMsB1 = ob1,
            OnnxLatencyMsB1 = om1,
            OnnxBaselineLatencyMsB32 = ob32,
            OnnxLatencyMsB32 = om32,
            OnnxSpeedup = Speedup(InferenceEngine.OnnxRuntime, 1),
            OnnxSpeedupB32 = Speedup(InferenceEngine.OnnxRuntime, 32),
            LatencyBudgetMs = latency?.BudgetMs,
            LatencyBatch = latency?.Table.Batch,
            PredictedLatencyMs = latency?.Table.Predict(chosen),
            MeasuredLatencyMs = latency is null ? null
                : TorchSharpBenchmark.InferencePair(baseline, mergedModel, latency.Table.Batch, inputSize, options.LatencyWarmup, options.LatencyRuns).B.MedianMs,
        };
    }

    /// <summary>The short Markdown report: baseline against merged model.</summary>
    public static string RenderReport(PruneOptions options, PruneMetrics m)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(m);
        var c = CultureInfo.InvariantCulture;
        var s = new StringBuilder();
        s.AppendLine(c, $"# UPDP: {m.Model}, {m.Blocks.Count} blocks pruned ({m.Method})");
        s.AppendLine();
        s.AppendLine(c, $"Baseline `{options.Checkpoint}`, data `{options.Data}`, pruned blocks {string.Join(", ", m.Blocks)} " +
            $"(search val top-1 {m.SearchValTop1:P2}); merge check max |Δ| {m.MergeMaxAbsDiff:G3} ≤ {m.MergeTolerance:G3}.");
        s.AppendLine();
        var stage1 = options.SupernetCheckpoint is { } given
            ? $"the given supernet `{given}`"
            : string.Create(c, $"{options.Supernet.Epochs} epochs at lr {options.Supernet.LearningRate:G3}");
        var distilled = m.Distill is { } teacher
            ? string.Create(c, $"distilled from `{teacher}` (α {options.Distillation!.Alpha:G3}, T {options.Distillation.Temperature:G3})")
            : "no distillation";
        s.AppendLine(c, $"Recipe: supernet {stage1}; fine-tune {options.Finetune.Epochs} epochs at lr {options.Finetune.LearningRate:G3}; {distilled}.");
        s.AppendLine();
        s.AppendLine("| model | test top-1 | params | MACs | TorchSharp b1 (ms) | TorchSharp b32 (ms) | ONNX Runtime b1 (ms) | ONNX Runtime b32 (ms) |");
        s.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        s.AppendLine(c, $"| baseline | {m.BaselineTop1:P2} | {m.BaselineParams:N0} | {m.BaselineMacs:N0} | {m.BaselineLatencyMsB1:F2} | {m.BaselineLatencyMsB32:F2} | {m.OnnxBaselineLatencyMsB1:F2} | {m.OnnxBaselineLatencyMsB32:F2} |");
        s.AppendLine(c, $"| merged | {m.Top1:P2} | {m.Params:N0} | {m.Macs:N0} | {m.LatencyMsB1:F2} | {m.LatencyMsB32:F2} | {m.OnnxLatencyMsB1:F2} | {m.OnnxLatencyMsB32:F2} |");
        s.AppendLine();
        if (m.LatencyBudgetMs is double budget)
        {
            s.AppendLine(c, $"Latency budget {budget:G4} ms at batch {m.LatencyBatch}: the subset was predicted at {m.PredictedLatencyMs:F2} ms " +
                $"by the per-block latency table; the merged model measured {m.MeasuredLatencyMs:F2} ms.");
            s.AppendLine();
        }
        s.AppendLine(c, $"Speed-up {m.Speedup:F2}× at batch 1, {m.SpeedupB32:F2}× at batch 32 in TorchSharp; {m.OnnxSpeedup:F2}× and {m.OnnxSpeedupB32:F2}× in ONNX Runtime " +
            $"(CPU, {m.Threads} intra-op threads each, {m.InputSize}×{m.InputSize} inputs, median of {options.LatencyRuns} runs, the two models timed in turns).");
        s.AppendLine();
        if (m.OnnxSkipped is { } why)
        {
            s.AppendLine(c, $"No `{OnnxFile}`: {why}.");
        }
        else
        {
            s.AppendLine(c, $"`{OnnxFile}`: the merged model in ONNX, checked in ONNX Runtime against TorchSharp on test images: max |Δ| = {m.OnnxRelativeDiff:G3}·max(1, max |y|).");
        }
        return s.ToString();
    }

    // Reports on the calling thread.
    private sealed class Relay<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
