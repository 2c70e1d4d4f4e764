using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json.Serialization;
using Updp.Benchmarks;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>
/// A latency budget as the user gives it (docs/METHOD.md#latency-budget): a number of milliseconds
/// per batch, or a percentage of the unpruned model's time measured on the same engine, which is
/// only known once the latency table is (<see cref="Resolve"/>).
/// </summary>
public sealed record LatencyLimit
{
    private LatencyLimit(double value, bool isPercent)
    {
        Value = value;
        IsPercent = isPercent;
    }

    /// <summary>Milliseconds, or with <see cref="IsPercent"/> a percentage in (0, 100).</summary>
    public double Value { get; }

    /// <summary>Whether <see cref="Value"/> is a percentage of the unpruned model's measured time.</summary>
    public bool IsPercent { get; }

    /// <summary>At most <paramref name="ms"/> milliseconds per batch.</summary>
    /// <exception cref="ArgumentException">Not a positive finite number.</exception>
    public static LatencyLimit Milliseconds(double ms) => double.IsFinite(ms) && ms > 0
        ? new LatencyLimit(ms, false)
        : throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"latency budget {ms:G} ms: expected a positive number of milliseconds"));

    /// <summary>At most <paramref name="percent"/> % of the unpruned model's measured time.</summary>
    /// <exception cref="ArgumentException">Not in (0, 100): at 100 % or more the unpruned model fits already.</exception>
    public static LatencyLimit PercentOfUnpruned(double percent) => double.IsFinite(percent) && percent > 0 && percent < 100
        ? new LatencyLimit(percent, true)
        : throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
            $"latency budget {percent:G}%: expected a percentage in (0, 100) of the unpruned model's time"));

    /// <summary>
    /// <c>12.5</c> (or <c>12.5ms</c>): milliseconds; <c>70%</c>: a percentage of the unpruned model's
    /// time. Numbers are read in the invariant culture (a point for decimals). On failure
    /// <paramref name="error"/> says what was expected and what was given.
    /// </summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out LatencyLimit? limit, [NotNullWhen(false)] out string? error)
    {
        limit = null;
        var value = text?.Trim() ?? "";
        var percent = value.EndsWith('%');
        var number = percent ? value[..^1].TrimEnd() : value.EndsWith("ms", StringComparison.OrdinalIgnoreCase) ? value[..^2].TrimEnd() : value;
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
        {
            error = $"expected milliseconds (e.g. 12.5) or a percentage of the unpruned model's time (e.g. 70%), got '{text}'";
            return false;
        }
        try
        {
            limit = percent ? PercentOfUnpruned(v) : Milliseconds(v);
            error = null;
            return true;
        }
        catch (ArgumentException e)
        {
            error = e.Message;
            return false;
        }
    }

    /// <summary><see cref="TryParse"/>, throwing.</summary>
    /// <exception cref="ArgumentException">The text is not a budget (the message says why).</exception>
    public static LatencyLimit Parse(string text) => TryParse(text, out var limit, out var error) ? limit : throw new ArgumentException(error);

    /// <summary>The budget in milliseconds, given the unpruned model's measured time.</summary>
    public double Resolve(double unprunedMs) => IsPercent ? Value / 100 * unprunedMs : Value;

    /// <summary><c>70%</c> or <c>12.5 ms</c>.</summary>
    public override string ToString() => IsPercent
        ? string.Create(CultureInfo.InvariantCulture, $"{Value:G}%")
        : string.Create(CultureInfo.InvariantCulture, $"{Value:G} ms");
}

/// <summary>
/// A latency budget for the merged model (beyond the paper, as LayerMerge does): subsets are
/// predicted from a per-block latency table measured on this machine and engine, and the search
/// only scores subsets predicted to fit.
/// </summary>
/// <param name="Table">The table, for the model configuration, input size, batch and threads in use.</param>
/// <param name="BudgetMs">The most the merged model may take per batch of <see cref="BlockLatencyTable.Batch"/>.</param>
/// <param name="TablePath">Where the table is cached (reported in search.json).</param>
public sealed record LatencyBudget(BlockLatencyTable Table, double BudgetMs, string? TablePath = null)
{
    /// <summary>
    /// Timed runs per measurement of a table and of its check: 20 in TorchSharp; 100 in ONNX Runtime,
    /// where a small model takes about a millisecond and a block tens of microseconds, so that more
    /// runs cost little and steady the medians on a shared machine.
    /// </summary>
    public static int DefaultRuns(InferenceEngine engine) => engine == InferenceEngine.OnnxRuntime ? 100 : 20;

    /// <summary>The budget as it was asked for (a percentage, say); null when given in milliseconds directly.</summary>
    public LatencyLimit? Limit { get; init; }

    /// <summary>The engine of the table, and of every measurement that checks it.</summary>
    public InferenceEngine Engine => InferenceEngines.Parse(Table.Engine)
        ?? throw new InvalidDataException($"latency table '{TablePath}': unknown engine '{Table.Engine}'");

    /// <summary>
    /// The budget for a model configuration and input size at <paramref name="batch"/>, with its table
    /// loaded from <paramref name="tablePath"/> (default <see cref="BlockLatencyTable.DefaultPath"/>)
    /// when it was measured for the same settings and engine on this machine, else measured and cached
    /// there; a percentage <paramref name="limit"/> is of the table's measured unpruned time. The
    /// latencies are <paramref name="engine"/>'s: TorchSharp's on <paramref name="device"/> (default
    /// the CPU), or ONNX Runtime's on the CPU whatever the device. For the mixed space
    /// (<paramref name="space"/>) a cached table must have the dropped forms, or it is measured again.
    /// </summary>
    public static LatencyBudget Create(ModelConfig config, int inputSize, LatencyLimit limit, int batch, string? tablePath, out bool measured, Device? device = null,
        SearchSpace space = SearchSpace.Merge, InferenceEngine engine = InferenceEngine.TorchSharp)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(limit);
        if (batch < 1)
        {
            throw new ArgumentException($"latency batch {batch}: expected at least 1");
        }
        var on = engine == InferenceEngine.OnnxRuntime ? Devices.Cpu : device;
        var path = tablePath ?? BlockLatencyTable.DefaultPath(config, inputSize, batch, on, engine);
        var table = BlockLatencyTable.LoadOrMeasure(path, config, inputSize, batch, out measured, runs: DefaultRuns(engine), device: on,
            needDropped: space == SearchSpace.Mixed, engine: engine);
        return new LatencyBudget(table, limit.Resolve(table.ModelMs), path) { Limit = limit };
    }

    /// <summary><see cref="Create(ModelConfig, int, LatencyLimit, int, string?, out bool, Device?, SearchSpace, InferenceEngine)"/> for a budget in milliseconds.</summary>
    public static LatencyBudget Create(ModelConfig config, int inputSize, double budgetMs, int batch, string? tablePath, out bool measured, Device? device = null,
        SearchSpace space = SearchSpace.Merge, InferenceEngine engine = InferenceEngine.TorchSharp) =>
        Create(config, inputSize, LatencyLimit.Milliseconds(budgetMs), batch, tablePath, out measured, device, space, engine);

    /// <summary>Whether merging <paramref name="subset"/> is predicted to fit the budget.</summary>
    public bool Fits(IReadOnlyList<int> subset) => Table.Predict(subset) <= BudgetMs;

    /// <summary>Whether <paramref name="assignment"/>, its blocks merged or dropped, is predicted to fit the budget.</summary>
    public bool Fits(BlockAssignment assignment)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        return Table.Predict(assignment.Merged, assignment.Dropped) <= BudgetMs;
    }

    /// <summary>
    /// The assignment of <paramref name="k"/> of <paramref name="candidates"/> predicted fastest: the
    /// blocks with the largest savings, each dropped where it is in <paramref name="droppable"/> and
    /// dropping saves more than merging, else merged. With K from <see cref="FewestBlocks"/> it fits
    /// the budget whenever any assignment does; the search starts from it when random draws find too
    /// few that fit (docs/METHOD.md#latency-budget).
    /// </summary>
    public BlockAssignment Fastest(IReadOnlyList<int> candidates, int k, IReadOnlyCollection<int> droppable)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentNullException.ThrowIfNull(droppable);
        var best = Table.Blocks.Where(b => candidates.Contains(b.Index))
            .Select(b => (b.Index, Drop: droppable.Contains(b.Index) && b.DropSavingMs is double d && d > b.SavingMs,
                Saving: droppable.Contains(b.Index) && b.DropSavingMs is double drop ? Math.Max(b.SavingMs, drop) : b.SavingMs))
            .OrderByDescending(b => b.Saving).ThenBy(b => b.Index).Take(k).ToList();
        return new BlockAssignment(best.Where(b => !b.Drop).Select(b => b.Index), best.Where(b => b.Drop).Select(b => b.Index));
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
    /// at the table's batch and input size, on the table's engine and device: the check of the prediction.
    /// </summary>
    public (double BaselineMs, double MergedMs) Remeasure(IReadOnlyList<int> subset, int runs = 20) =>
        Remeasure(BlockAssignment.MergeOnly(subset), runs);

    /// <summary>
    /// <see cref="Remeasure(IReadOnlyList{int}, int)"/> for an assignment of the mixed space: its
    /// merged blocks merged and its dropped blocks dropped.
    /// </summary>
    public (double BaselineMs, double MergedMs) Remeasure(BlockAssignment assignment, int runs = 20)
    {
        var (baseline, ms) = Measure([assignment], runs);
        return (baseline, ms[0]);
    }

    /// <summary>
    /// Builds a fresh model (random weights: latency does not depend on them) for each assignment,
    /// its blocks merged or dropped, and times it whole in turns with the unpruned one, at the
    /// table's batch and input size on the table's engine and device (<see cref="BlockLatencyTable.TimeModels"/>).
    /// One pair at a time, as <c>prune</c> times its merged model, so that a check measures what
    /// <c>prune</c> reports and no model shares the caches with more than one other
    /// (docs/METHOD.md#latency-budget). The unpruned model's time is the median of its pairs'.
    /// </summary>
    public (double BaselineMs, double[] Ms) Measure(IReadOnlyList<BlockAssignment> assignments, int runs = 20, int warmup = 3)
    {
        ArgumentNullException.ThrowIfNull(assignments);
        var device = Devices.Parse(Table.Device);
        using var scope = NewDisposeScope();
        using var baseline = ModelRegistry.Create(Table.Config).MoveTo(device);
        var baselines = new List<double>();
        var ms = new double[assignments.Count];
        for (var i = 0; i < assignments.Count; i++)
        {
            using var model = ModelRegistry.Create(Table.Config).MoveTo(device);
            foreach (var index in assignments[i].Merged)
            {
                model.Prune(index).Lambda = 1;
            }
            foreach (var index in assignments[i].Dropped)
            {
                model.Drop(index);
            }
            model.eval();
            Merger.MergeAll(model, [randn(2, Table.Config.InChans, Table.Resolution, Table.Resolution, generator: new Generator(0))]);
            var pair = BlockLatencyTable.TimeModels([baseline, model], Engine, Table.Batch, Table.Resolution, warmup, runs);
            baselines.Add(pair[0]);
            ms[i] = pair[1];
        }
        baselines.Sort();
        var median = baselines.Count == 0 ? double.NaN
            : baselines.Count % 2 == 1 ? baselines[baselines.Count / 2] : (baselines[(baselines.Count / 2) - 1] + baselines[baselines.Count / 2]) / 2;
        return (median, ms);
    }

    /// <summary>
    /// Checks the table's prediction (docs/METHOD.md#latency-budget): <paramref name="chosen"/> and
    /// up to <paramref name="others"/> of <paramref name="pool"/> drawn at random (seeded by
    /// <paramref name="seed"/>) are built and timed whole with the unpruned model on the table's
    /// engine, and each measured time is set against its prediction.
    /// </summary>
    /// <param name="runs">Timed runs per model; default <see cref="DefaultRuns"/> for the table's engine.</param>
    public LatencyReport Check(BlockAssignment chosen, IReadOnlyList<BlockAssignment> pool, int others, int seed, int? runs = null)
    {
        ArgumentNullException.ThrowIfNull(chosen);
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentOutOfRangeException.ThrowIfNegative(others);
        var rest = pool.Where(a => !a.Equals(chosen)).Distinct().ToArray();
        var random = new Random(seed);
        // The first `others` places of a partial Fisher–Yates shuffle, kept in the pool's order.
        var picks = Enumerable.Range(0, rest.Length).ToArray();
        var n = Math.Min(others, rest.Length);
        for (var i = 0; i < n; i++)
        {
            var j = random.Next(i, picks.Length);
            (picks[i], picks[j]) = (picks[j], picks[i]);
        }
        BlockAssignment[] checkedOnes = [chosen, .. picks.Take(n).Order().Select(i => rest[i])];
        var (baselineMs, ms) = Measure(checkedOnes, runs ?? DefaultRuns(Engine));
        var checks = checkedOnes.Select((a, i) => new LatencyCheck(a.Blocks, a.Dropped.Count > 0 ? a.Forms : null, i == 0,
            Table.Predict(a.Merged, a.Dropped), ms[i])).ToList();
        return new LatencyReport(BudgetMs, Table.Batch, Table.Resolution, Table.Threads, TablePath, Table.ModelMs, checks[0].PredictedMs, checks[0].MeasuredMs, baselineMs,
            Table.Blocks)
        {
            Engine = Table.Engine,
            Requested = Limit?.ToString(),
            Checks = checks,
        };
    }
}

/// <summary>One candidate's predicted latency set against its model measured whole on the same engine.</summary>
/// <param name="Blocks">The changed blocks.</param>
/// <param name="Forms">Each block's form where some are dropped (<see cref="BlockAssignment.Forms"/>); null when all are merged.</param>
/// <param name="Chosen">Whether this is the search's choice (the others are drawn at random among the scored candidates).</param>
/// <param name="PredictedMs">The table's prediction (<see cref="BlockLatencyTable.Predict(IEnumerable{int}, IEnumerable{int})"/>).</param>
/// <param name="MeasuredMs">The model built with these forms, timed whole (median).</param>
public sealed record LatencyCheck(IReadOnlyList<int> Blocks,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyDictionary<int, string>? Forms,
    bool Chosen, double PredictedMs, double MeasuredMs)
{
    /// <summary>The prediction's error, (predicted − measured) / measured, in percent: positive when the table overestimates.</summary>
    public double ErrorPct => 100 * (PredictedMs - MeasuredMs) / MeasuredMs;
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
    IReadOnlyList<BlockLatency>? Blocks = null)
{
    /// <summary>The engine of the table and of the measurements (<see cref="InferenceEngines.Name"/>); searches from before engines used TorchSharp.</summary>
    public string Engine { get; init; } = "torchsharp";

    /// <summary>The budget as asked for (<c>70%</c>, <c>12.5 ms</c>); null in files from before percentages.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Requested { get; init; }

    /// <summary>The chosen candidate first, then the ones drawn at random: predicted against measured.</summary>
    public IReadOnlyList<LatencyCheck> Checks { get; init; } = [];

    /// <summary>The mean of |<see cref="LatencyCheck.ErrorPct"/>| over <see cref="Checks"/> (LayerMerge reports the same); null without checks.</summary>
    public double? MeanAbsErrorPct => Checks.Count == 0 ? null : Checks.Average(c => Math.Abs(c.ErrorPct));
}
