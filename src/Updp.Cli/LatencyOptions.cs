using System.CommandLine;
using Spectre.Console;
using Updp.Benchmarks;
using Updp.Checkpoints;
using Updp.Pruning;

namespace Updp.Cli;

/// <summary>The latency-budget options of <c>search</c> and <c>prune</c>, declared once (docs/METHOD.md#latency-budget).</summary>
internal static class LatencyOptions
{
    public static Option<string?> Budget() => new Option<string?>("--latency-budget")
    {
        Description = "Only subsets whose pruned model is predicted (per-block latency table of this machine, on --latency-engine) to take at most this long per batch: " +
            "milliseconds (12.5) or a percentage of the unpruned model's measured time (70%).",
    }.Accepts(value => LatencyLimit.TryParse(value, out _, out var error) ? null : error);

    public static Option<int> Batch() => new Option<int>("--latency-batch")
    {
        Description = "Batch size the latency budget is for.",
        DefaultValueFactory = _ => 1,
    }.Range(1, OptionRules.MaxBatch);

    public static Option<string?> Table() => new Option<string?>("--latency-table")
    {
        Description = "Per-block latency table file (reused when measured for the same model, input, batch, threads and engine on this machine; default: in ~/.cache/updp/latency).",
    };

    public static Option<string> Engine() => new Option<string>("--latency-engine")
    {
        Description = "Where the latency budget is measured: onnxruntime (each block exported to ONNX on its input shape and timed in ONNX Runtime on the CPU, " +
            "the deployment engine of model.onnx) or torchsharp (each block timed in TorchSharp on --device).",
        DefaultValueFactory = _ => InferenceEngines.Name(InferenceEngine.OnnxRuntime),
    }.Accepts(value => InferenceEngines.Parse(value) is null ? $"expected torchsharp or onnxruntime, got '{value}'" : null);

    public static Option<int> Checks() => new Option<int>("--latency-checks")
    {
        Description = "With --latency-budget: scored candidates, besides the chosen one, drawn at random and timed whole to check the table's prediction.",
        DefaultValueFactory = _ => SearchOptions.DefaultLatencyChecks,
    }.Range(0, 1000);

    /// <summary>The budget option's value, already checked while parsing; null when not given.</summary>
    public static LatencyLimit? ParseBudget(string? value) => value is null ? null : LatencyLimit.Parse(value);

    /// <summary>The engine option's value, already checked while parsing.</summary>
    public static InferenceEngine ParseEngine(string? value) =>
        InferenceEngines.Parse(value) ?? throw new ArgumentException($"--latency-engine '{value}': expected torchsharp or onnxruntime");

    /// <summary>
    /// K and the budget: K as given, or with a budget and no K the fewest blocks that can fit it.
    /// Measures (and caches) the latency table on <paramref name="engine"/> (TorchSharp's on
    /// <paramref name="device"/>) when needed and says so; a percentage budget is of the table's
    /// measured unpruned time.
    /// </summary>
    public static (int K, LatencyBudget? Budget) Resolve(string checkpoint, int? blocks, LatencyLimit? limit, int batch, string? tablePath,
        IReadOnlyList<int>? candidates, TorchSharp.torch.Device? device = null, SearchSpace space = SearchSpace.Merge, InferenceEngine engine = InferenceEngine.OnnxRuntime)
    {
        if (limit is null)
        {
            return (blocks ?? throw new ArgumentException("give --blocks K (how many blocks to prune) or --latency-budget MS (or a percentage, e.g. 70%)"), null);
        }
        var meta = Checkpoint.ReadMeta(checkpoint);
        if (meta?.Model is not { } config || meta.Preprocessing is not { } preprocessing)
        {
            throw new ArgumentException($"'{checkpoint}': --latency-budget needs a checkpoint with a sidecar naming its model and input size (written by updp)");
        }
        AnsiConsole.MarkupLine(Markup.Escape(
            $"{InferenceEngines.Name(engine)} latency table of {config.Name} at batch {batch}, {preprocessing.InputSize}×{preprocessing.InputSize}..."));
        var budget = LatencyBudget.Create(config, preprocessing.InputSize, limit, batch, tablePath, out var measured, device, space, engine);
        AnsiConsole.MarkupLine(Markup.Escape(
            $"{(measured ? "measured" : "reused")} {budget.TablePath}: unpruned {budget.Table.ModelMs:F2} ms, every block merged {budget.Table.AllMergedMs:F2} ms " +
            $"(predicted {budget.Table.Predict(budget.Table.Blocks.Select(b => b.Index)):F2} ms); budget {budget.BudgetMs:F2} ms" +
            (limit.IsPercent ? $" ({limit} of the unpruned model's)" : "")));
        var k = blocks ?? budget.FewestBlocks(candidates ?? [.. budget.Table.Blocks.Select(b => b.Index)], space);
        return (k, budget);
    }
}
