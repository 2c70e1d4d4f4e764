using System.CommandLine;
using Spectre.Console;
using Updp.Checkpoints;
using Updp.Pruning;

namespace Updp.Cli;

/// <summary>The latency-budget options of <c>search</c> and <c>prune</c>, declared once.</summary>
internal static class LatencyOptions
{
    public static Option<double?> Budget() => new Option<double?>("--latency-budget")
    {
        Description = "Only subsets whose merged model is predicted (per-block latency table of this machine) to take at most this many ms per batch.",
    }.Range(0, 1e9, minOpen: true);

    public static Option<int> Batch() => new Option<int>("--latency-batch")
    {
        Description = "Batch size the latency budget is for.",
        DefaultValueFactory = _ => 1,
    }.Range(1, OptionRules.MaxBatch);

    public static Option<string?> Table() => new Option<string?>("--latency-table")
    {
        Description = "Per-block latency table file (reused when measured for the same model, input, batch and threads on this machine; default: in ~/.cache/updp/latency).",
    };

    /// <summary>
    /// K and the budget: K as given, or with a budget and no K the fewest blocks that can fit it.
    /// Measures (and caches) the latency table on <paramref name="device"/> when needed and says so.
    /// </summary>
    public static (int K, LatencyBudget? Budget) Resolve(string checkpoint, int? blocks, double? budgetMs, int batch, string? tablePath,
        IReadOnlyList<int>? candidates, TorchSharp.torch.Device? device = null, SearchSpace space = SearchSpace.Merge)
    {
        if (budgetMs is not double ms)
        {
            return (blocks ?? throw new ArgumentException("give --blocks K (how many blocks to prune) or --latency-budget MS"), null);
        }
        var meta = Checkpoint.ReadMeta(checkpoint);
        if (meta?.Model is not { } config || meta.Preprocessing is not { } preprocessing)
        {
            throw new ArgumentException($"'{checkpoint}': --latency-budget needs a checkpoint with a sidecar naming its model and input size (written by updp)");
        }
        AnsiConsole.MarkupLine(Markup.Escape($"latency table of {config.Name} at batch {batch}, {preprocessing.InputSize}×{preprocessing.InputSize}..."));
        var budget = LatencyBudget.Create(config, preprocessing.InputSize, ms, batch, tablePath, out var measured, device, space);
        AnsiConsole.MarkupLine(Markup.Escape(
            $"{(measured ? "measured" : "reused")} {budget.TablePath}: unpruned {budget.Table.ModelMs:F2} ms, every block merged {budget.Table.AllMergedMs:F2} ms " +
            $"(predicted {budget.Table.Predict(budget.Table.Blocks.Select(b => b.Index)):F2} ms)"));
        var k = blocks ?? budget.FewestBlocks(candidates ?? [.. budget.Table.Blocks.Select(b => b.Index)], space);
        return (k, budget);
    }
}
