using System.Globalization;
using System.Text;
using Updp.Benchmarks;
using Updp.Export;
using Updp.Models;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>
/// What <c>updp prune</c> reports about its result: test top-1, parameters, MACs, the ONNX export
/// checked in ONNX Runtime, and TorchSharp and ONNX Runtime latency of the baseline and the merged
/// model timed in turns.
/// </summary>
public static class PruneMeasurement
{
    /// <summary>Measures the baseline (the context's model) against the merged model of <paramref name="merge"/>; writes <c>model.onnx</c> next to it.</summary>
    public static PruneMetrics Measure(PruneContext context, PruneOptions options, SearchResult search, FinetuneResult finetune, MergeResult merge, LatencyBudget? latency)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(search);
        ArgumentNullException.ThrowIfNull(finetune);
        ArgumentNullException.ThrowIfNull(merge);
        var baseline = context.Model;
        var data = context.Data;
        var inputSize = data.Preprocessing.InputSize;
        var device = Devices.Of(baseline);
        var baselineTop1 = Evaluator.Evaluate(baseline, TrainingRun.EvalLoader(data.Splits.Test, data.Preprocessing, context.Settings.EvalBatchSize, device).Epoch(0)).Top1;
        using var mergedModel = StageData.LoadCheckpoint(merge.Checkpoint, device).Model;
        var baselineProfile = ModelProfiler.Profile(baseline, inputSize);
        var mergedProfile = ModelProfiler.Profile(mergedModel, inputSize);
        var (onnx, onnxSkipped) = ExportOnnx(context, options, mergedModel, merge);
        // Both models in every engine that can run them, timed in turns at the same thread count.
        InferenceEngine[] engines = onnx is null ? [InferenceEngine.TorchSharp] : [InferenceEngine.TorchSharp, InferenceEngine.OnnxRuntime];
        var t = new Timings(LatencyComparison.Run([new("baseline", baseline), new("merged", mergedModel)],
            engines, inputSize, [1, 32], options.LatencyWarmup, options.LatencyRuns));
        (InferenceEngine torch, InferenceEngine ort) = (InferenceEngine.TorchSharp, InferenceEngine.OnnxRuntime);
        var metrics = new PruneMetrics
        {
            Model = baseline.Config.Name,
            Method = finetune.Method,
            Distill = options.Distillation?.Teacher,
            Blocks = finetune.Blocks,
            Forms = finetune.Forms,
            BaselineTop1 = baselineTop1,
            Top1 = finetune.Top1,
            SearchValTop1 = search.Candidates[0].ValTop1,
            BaselineParams = baselineProfile.Params,
            BaselineMacs = baselineProfile.Macs,
            Params = mergedProfile.Params,
            Macs = mergedProfile.Macs,
            MergeMaxAbsDiff = merge.MaxAbsDiff,
            MergeTolerance = merge.Tolerance,
            InputSize = inputSize,
            Threads = get_num_threads(),
            Device = Devices.Name(device),
            BaselineLatencyMsB1 = t.Ms(torch, "baseline", 1),
            LatencyMsB1 = t.Ms(torch, "merged", 1),
            BaselineLatencyMsB32 = t.Ms(torch, "baseline", 32),
            LatencyMsB32 = t.Ms(torch, "merged", 32),
            Speedup = t.Speedup(torch, 1),
            SpeedupB32 = t.Speedup(torch, 32),
            OnnxRelativeDiff = onnx?.Parity.RelativeDiff ?? double.NaN,
            OnnxSkipped = onnxSkipped,
            OnnxBaselineLatencyMsB1 = t.Ms(ort, "baseline", 1),
            OnnxLatencyMsB1 = t.Ms(ort, "merged", 1),
            OnnxBaselineLatencyMsB32 = t.Ms(ort, "baseline", 32),
            OnnxLatencyMsB32 = t.Ms(ort, "merged", 32),
            OnnxSpeedup = t.Speedup(ort, 1),
            OnnxSpeedupB32 = t.Speedup(ort, 32),
            LatencyChecks = search.Latency?.Checks,
            LatencyMeanAbsErrorPct = search.Latency?.MeanAbsErrorPct,
        };
        return latency is null ? metrics : WithBudget(metrics, latency, finetune, baseline, mergedModel, onnx is not null, t, inputSize, options);
    }

    // The latency budget's fields: the merged model's predicted time set against its time measured on the budget's engine.
    private static PruneMetrics WithBudget(PruneMetrics metrics, LatencyBudget latency, FinetuneResult finetune, ImageClassifier baseline, ImageClassifier merged,
        bool exported, Timings t, int inputSize, PruneOptions options)
    {
        // A mixed model's dropped blocks are predicted dropped; the other methods' blocks as merged, as their search predicted them.
        var predicted = finetune.Forms is null
            ? latency.Table.Predict(finetune.Blocks)
            : latency.Table.Predict(finetune.Assignment.Merged, finetune.Assignment.Dropped);
        var (measuredBaseline, measured) = MeasuredAtBudget(latency, baseline, merged, exported, t, inputSize, options);
        return metrics with
        {
            LatencyBudgetMs = latency.BudgetMs,
            LatencyBatch = latency.Table.Batch,
            LatencyRequested = latency.Limit?.ToString(),
            LatencyEngine = latency.Table.Engine,
            PredictedLatencyMs = predicted,
            MeasuredLatencyMs = measured,
            MeasuredBaselineLatencyMs = measuredBaseline,
            LatencyModelMs = latency.Table.ModelMs,
            LatencyErrorPct = measured is double m ? 100 * (predicted - m) / m : null,
        };
    }

    // The unpruned and the fine-tuned merged model at the budget's batch on the budget's engine, timed
    // in turns: ONNX Runtime's batch-1 and batch-32 times are those just measured; nulls where the
    // model has no ONNX form to time.
    private static (double? BaselineMs, double? MergedMs) MeasuredAtBudget(LatencyBudget latency, ImageClassifier baseline, ImageClassifier merged, bool exported,
        Timings t, int inputSize, PruneOptions options)
    {
        var batch = latency.Table.Batch;
        if (latency.Engine == InferenceEngine.TorchSharp)
        {
            var (a, b) = TorchSharpBenchmark.InferencePair(baseline, merged, batch, inputSize, options.LatencyWarmup, options.LatencyRuns);
            return (a.MedianMs, b.MedianMs);
        }
        if (!exported)
        {
            return (null, null);
        }
        if (batch is 1 or 32)
        {
            return (t.Ms(InferenceEngine.OnnxRuntime, "baseline", batch), t.Ms(InferenceEngine.OnnxRuntime, "merged", batch));
        }
        var ms = BlockLatencyTable.TimeModels([baseline, merged], InferenceEngine.OnnxRuntime, batch, inputSize, options.LatencyWarmup, options.LatencyRuns);
        return (ms[0], ms[1]);
    }

    // model.onnx next to the merged checkpoint, checked in ONNX Runtime on test images; or why a model cannot be exported.
    private static (OnnxExportReport? Report, string? Skipped) ExportOnnx(PruneContext context, PruneOptions options, ImageClassifier merged, MergeResult merge)
    {
        using var scope = NewDisposeScope();
        var inputs = MergeStage.CheckImages(context, options);
        try
        {
            return (OnnxExporter.Export(merged, Path.Combine(Path.GetDirectoryName(merge.Checkpoint)!, PrunePipeline.OnnxFile), inputs), null);
        }
        catch (MissingOnnxEmitterException e)
        {
            // A family without ONNX emitters yet: the pipeline's result stands, the report says why there is no model.onnx.
            return (null, e.Message);
        }
    }

    // Median latencies and paired speed-ups of LatencyComparison.Run, NaN for what was not measured.
    private sealed class Timings(IReadOnlyList<BenchResult> timings)
    {
        public double Ms(InferenceEngine engine, string variant, int batch) =>
            timings.SingleOrDefault(t => t.Engine == engine && t.Variant == variant && t.Batch == batch)?.Stats.MedianMs ?? double.NaN;

        public double Speedup(InferenceEngine engine, int batch) =>
            timings.SingleOrDefault(t => t.Engine == engine && t.Variant == "merged" && t.Batch == batch)?.Speedup ?? double.NaN;
    }

    // The budget, the prediction for the fine-tuned model and the search's check of the prediction (docs/METHOD.md#latency-budget).
    private static void RenderLatencyBudget(StringBuilder s, PruneMetrics m, double budget)
    {
        var c = CultureInfo.InvariantCulture;
        var engine = m.LatencyEngine == "onnxruntime" ? "ONNX Runtime" : "TorchSharp";
        var requested = m.LatencyRequested is { } r && r.EndsWith('%') ? $" ({r} of the unpruned model's)" : "";
        var error = m.LatencyErrorPct is double e ? string.Create(c, $" (prediction error {e:+0.0;-0.0}%)") : "";
        var verdict = m.MeasuredLatencyMs is double measured
            ? measured <= budget ? "within the budget" : string.Create(c, $"{100 * (measured - budget) / budget:F1}% over the budget")
            : "not measured: the model has no ONNX form";
        // The machine's speed drifts between the table and this run; the unpruned model timed with the merged one shows by how much.
        var relative = m.MeasuredLatencyMs is double merged && m.MeasuredBaselineLatencyMs is double unpruned
            ? string.Create(c, $" The unpruned model, timed with it, measured {unpruned:F2} ms ({m.LatencyModelMs:F2} ms in the table): the merged model takes {100 * merged / unpruned:F1}% of its time.")
            : "";
        s.AppendLine(c, $"Latency budget {budget:G4} ms{requested} at batch {m.LatencyBatch} in {engine}: the subset was predicted at {m.PredictedLatencyMs:F2} ms " +
            $"by the per-block latency table; the merged model measured {m.MeasuredLatencyMs:F2} ms{error}, {verdict}.{relative}");
        s.AppendLine();
        if (m.LatencyChecks is not { Count: > 0 } checks)
        {
            return;
        }
        var which = checks.Count == 1
            ? "the chosen candidate (the only one checked: no other was scored, or --latency-checks 0), built and timed whole"
            : $"the chosen candidate and {checks.Count - 1} drawn at random among the scored ones, each built and timed whole";
        s.AppendLine(c, $"The prediction checked in the search: {which} in {engine} (random weights) with the unpruned model; " +
            $"mean absolute error {m.LatencyMeanAbsErrorPct:F1}%.");
        s.AppendLine();
        s.AppendLine("| candidate | blocks | predicted (ms) | measured (ms) | error |");
        s.AppendLine("|---|---|---:|---:|---:|");
        foreach (var check in checks)
        {
            var blocks = string.Join(", ", check.Blocks.Select(b => check.Forms?.GetValueOrDefault(b) == BlockAssignment.DropForm ? $"{b} (drop)" : $"{b}"));
            s.AppendLine(c, $"| {(check.Chosen ? "chosen" : "random")} | {blocks} | {check.PredictedMs:F2} | {check.MeasuredMs:F2} | {check.ErrorPct:+0.0;-0.0}% |");
        }
        s.AppendLine();
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
        s.AppendLine(c, $"Baseline `{options.Checkpoint}`, data `{options.Settings.Data}`, pruned blocks {string.Join(", ", m.Blocks)} " +
            $"(search val top-1 {m.SearchValTop1:P2}); merge check max |Δ| {m.MergeMaxAbsDiff:G3} ≤ {m.MergeTolerance:G3}.");
        s.AppendLine();
        if (m.Forms is { } forms)
        {
            // The mixed method chose a form per block (docs/METHOD.md#mixed).
            s.AppendLine("| block | form |");
            s.AppendLine("|---:|---|");
            foreach (var block in m.Blocks)
            {
                s.AppendLine(c, $"| {block} | {(forms.GetValueOrDefault(block) == BlockAssignment.DropForm ? "dropped" : "merged")} |");
            }
            s.AppendLine();
        }
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
            RenderLatencyBudget(s, m, budget);
        }
        var where = m.Device == "cpu" ? "CPU" : $"TorchSharp on {m.Device}, ONNX Runtime on the CPU";
        s.AppendLine(c, $"Speed-up {m.Speedup:F2}× at batch 1, {m.SpeedupB32:F2}× at batch 32 in TorchSharp; {m.OnnxSpeedup:F2}× and {m.OnnxSpeedupB32:F2}× in ONNX Runtime " +
            $"({where}, {m.Threads} intra-op threads each, {m.InputSize}×{m.InputSize} inputs, median of {options.LatencyRuns} runs, the two models timed in turns).");
        s.AppendLine();
        if (m.OnnxSkipped is { } why)
        {
            s.AppendLine(c, $"No `{PrunePipeline.OnnxFile}`: {why}.");
        }
        else
        {
            s.AppendLine(c, $"`{PrunePipeline.OnnxFile}`: the merged model in ONNX, checked in ONNX Runtime against TorchSharp on test images: max |Δ| = {m.OnnxRelativeDiff:G3}·max(1, max |y|).");
        }
        return s.ToString();
    }
}
