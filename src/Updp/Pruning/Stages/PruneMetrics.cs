namespace Updp.Pruning;

/// <summary>The pipeline's summary, written to <c>metrics.json</c> (snake_case keys).</summary>
public sealed record PruneMetrics
{
    public string Model { get; init; } = "";

    public string Method { get; init; } = "";

    /// <summary>The teacher checkpoint stages 1 and 3 were distilled from; null for none.</summary>
    public string? Distill { get; init; }

    /// <summary>S, the pruned (merged or dropped) blocks.</summary>
    public IReadOnlyList<int> Blocks { get; init; } = [];

    /// <summary><c>mixed</c> only: each block of <see cref="Blocks"/> with its form, <c>merge</c> or <c>drop</c>; null (not written) otherwise.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<int, string>? Forms { get; init; }

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

    /// <summary>Where TorchSharp ran the models (<c>cpu</c> or <c>cuda:N</c>); ONNX Runtime runs on the CPU.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Median TorchSharp inference latency (ms) on <see cref="Device"/>, baseline and merged, batch 1 and 32.</summary>
    public double BaselineLatencyMsB1 { get; init; }

    public double LatencyMsB1 { get; init; }

    public double BaselineLatencyMsB32 { get; init; }

    public double LatencyMsB32 { get; init; }

    /// <summary>Baseline latency / merged latency at batch 1 (median of the ratios of runs made back to back, <see cref="Benchmarks.LatencyStats.PairedSpeedup"/>).</summary>
    public double Speedup { get; init; }

    /// <summary>Baseline latency / merged latency at batch 32.</summary>
    public double SpeedupB32 { get; init; }

    /// <summary>The latency budget (ms at <see cref="LatencyBatch"/>); null without one.</summary>
    public double? LatencyBudgetMs { get; init; }

    public int? LatencyBatch { get; init; }

    /// <summary>The budget as asked for (<c>70%</c>, <c>12.5 ms</c>); null without one.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? LatencyRequested { get; init; }

    /// <summary>The engine of the latency table and of <see cref="MeasuredLatencyMs"/> (<c>torchsharp</c> or <c>onnxruntime</c>); null without a budget.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? LatencyEngine { get; init; }

    /// <summary>The merged subset's latency predicted by the per-block table.</summary>
    public double? PredictedLatencyMs { get; init; }

    /// <summary>The fine-tuned merged model, timed at <see cref="LatencyBatch"/> on <see cref="LatencyEngine"/> alternately with the baseline.</summary>
    public double? MeasuredLatencyMs { get; init; }

    /// <summary>The unpruned model, timed in turns with <see cref="MeasuredLatencyMs"/>: the machine's speed now, against <see cref="LatencyModelMs"/> in the table.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public double? MeasuredBaselineLatencyMs { get; init; }

    /// <summary>The unpruned model's time in the latency table, which a percentage budget is of.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public double? LatencyModelMs { get; init; }

    /// <summary>(<see cref="PredictedLatencyMs"/> − <see cref="MeasuredLatencyMs"/>) / <see cref="MeasuredLatencyMs"/>, in percent.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public double? LatencyErrorPct { get; init; }

    /// <summary>The search's check of the prediction (<see cref="LatencyReport.Checks"/>): its choice and a few random candidates, predicted against measured.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<LatencyCheck>? LatencyChecks { get; init; }

    /// <summary>The mean absolute error of those checks, in percent (<see cref="LatencyReport.MeanAbsErrorPct"/>).</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public double? LatencyMeanAbsErrorPct { get; init; }

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
