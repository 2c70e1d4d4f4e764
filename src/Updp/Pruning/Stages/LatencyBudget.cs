using Updp.Benchmarks;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>
/// A latency budget for the merged model (beyond the paper, as LayerMerge does): subsets are
/// predicted from a per-block latency table measured on this machine, and the search only scores
/// subsets predicted to fit.
/// </summary>
/// <param name="Table">The table, for the model configuration, input size, batch and threads in use.</param>
/// <param name="BudgetMs">The most the merged model may take per batch of <see cref="BlockLatencyTable.Batch"/>.</param>
/// <param name="TablePath">Where the table is cached (reported in search.json).</param>
public sealed record LatencyBudget(BlockLatencyTable Table, double BudgetMs, string? TablePath = null)
{
    /// <summary>
    /// The budget for a model configuration and input size at <paramref name="batch"/>, with its table
    /// loaded from <paramref name="tablePath"/> (default <see cref="BlockLatencyTable.DefaultPath"/>)
    /// when it was measured for the same settings on this machine, else measured and cached there;
    /// the latencies are <paramref name="device"/>'s (default the CPU). For the mixed space
    /// (<paramref name="space"/>) a cached table must have the dropped forms, or it is measured again.
    /// </summary>
    public static LatencyBudget Create(ModelConfig config, int inputSize, double budgetMs, int batch, string? tablePath, out bool measured, Device? device = null,
        SearchSpace space = SearchSpace.Merge)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!(budgetMs > 0) || double.IsInfinity(budgetMs))
        {
            throw new ArgumentException($"latency budget {budgetMs} ms: expected a positive number of milliseconds");
        }
        if (batch < 1)
        {
            throw new ArgumentException($"latency batch {batch}: expected at least 1");
        }
        var path = tablePath ?? BlockLatencyTable.DefaultPath(config, inputSize, batch, device);
        var table = BlockLatencyTable.LoadOrMeasure(path, config, inputSize, batch, out measured, device: device, needDropped: space == SearchSpace.Mixed);
        return new LatencyBudget(table, budgetMs, path);
    }

    /// <summary>Whether merging <paramref name="subset"/> is predicted to fit the budget.</summary>
    public bool Fits(IReadOnlyList<int> subset) => Table.Predict(subset) <= BudgetMs;

    /// <summary>Whether <paramref name="assignment"/>, its blocks merged or dropped, is predicted to fit the budget.</summary>
    public bool Fits(BlockAssignment assignment)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        return Table.Predict(assignment.Merged, assignment.Dropped) <= BudgetMs;
    }

    /// <summary>
    /// K for the budget: the fewest candidate blocks whose merging (in the mixed space: merging or
    /// dropping, whichever saves more where dropping is allowed) can fit it.
    /// </summary>
    /// <exception cref="ArgumentException">No subset can fit, or the unpruned model already does.</exception>
    public int FewestBlocks(IReadOnlyList<int> candidates, SearchSpace space = SearchSpace.Merge)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        var setting = $"{Table.Config.Name} at batch {Table.Batch}, {Table.Resolution}×{Table.Resolution}, {Table.Threads} threads";
        var mixed = space == SearchSpace.Mixed;
        return Table.FewestBlocksFor(BudgetMs, candidates, orDrop: mixed) switch
        {
            null when mixed => throw new ArgumentException(
                $"latency budget {BudgetMs:G4} ms: merging or dropping all {candidates.Count} candidate blocks, whichever is faster, is predicted at " +
                $"{Table.ModelMs - Table.Blocks.Where(b => candidates.Contains(b.Index)).Sum(b => Math.Max(b.SavingMs, b.DropSavingMs ?? b.SavingMs)):F2} ms ({setting}); give a larger budget"),
            null => throw new ArgumentException(
                $"latency budget {BudgetMs:G4} ms: merging all {candidates.Count} candidate blocks is predicted at " +
                $"{Table.Predict(candidates.Where(c => Table.Blocks.Any(b => b.Index == c))):F2} ms ({setting}); give a larger budget"),
            0 => throw new ArgumentException(
                $"latency budget {BudgetMs:G4} ms: the unpruned model already fits it ({Table.ModelMs:F2} ms, {setting}); nothing to prune"),
            int k => k,
        };
    }

    /// <summary>
    /// Times a fresh model with <paramref name="subset"/> merged against the unpruned one, alternately,
    /// at the table's batch and input size, on the table's device: the check of the prediction.
    /// </summary>
    public (double BaselineMs, double MergedMs) Remeasure(IReadOnlyList<int> subset, int runs = 20) =>
        Remeasure(BlockAssignment.MergeOnly(subset), runs);

    /// <summary>
    /// <see cref="Remeasure(IReadOnlyList{int}, int)"/> for an assignment of the mixed space: its
    /// merged blocks merged and its dropped blocks dropped.
    /// </summary>
    public (double BaselineMs, double MergedMs) Remeasure(BlockAssignment assignment, int runs = 20)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        var device = Devices.Parse(Table.Device);
        using var scope = NewDisposeScope();
        using var original = ModelRegistry.Create(Table.Config).MoveTo(device);
        using var merged = ModelRegistry.Create(Table.Config).MoveTo(device);
        foreach (var index in assignment.Merged)
        {
            merged.Prune(index).Lambda = 1;
        }
        foreach (var index in assignment.Dropped)
        {
            merged.Drop(index);
        }
        merged.eval();
        Merger.MergeAll(merged, [randn(2, Table.Config.InChans, Table.Resolution, Table.Resolution, generator: new Generator(0))]);
        var (b, m) = TorchSharpBenchmark.InferencePair(original, merged, Table.Batch, Table.Resolution, runs: runs);
        return (b.MedianMs, m.MedianMs);
    }
}

/// <summary>What a latency-constrained search reports in <c>search.json</c>.</summary>
/// <param name="PredictedMs">The best subset's predicted latency.</param>
/// <param name="MeasuredMs">The best subset's merged model, measured again after the search.</param>
/// <param name="MeasuredBaselineMs">The unpruned model, timed alternately with it.</param>
/// <param name="Blocks">
/// The table's per-block times the candidates were predicted from, kept with the search so that its
/// figures can be drawn again from the run directory alone; null (not written) in searches from before.
/// </param>
public sealed record LatencyReport(double BudgetMs, int Batch, int Resolution, int Threads, string? Table, double ModelMs,
    double PredictedMs, double MeasuredMs, double MeasuredBaselineMs,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    IReadOnlyList<BlockLatency>? Blocks = null);
