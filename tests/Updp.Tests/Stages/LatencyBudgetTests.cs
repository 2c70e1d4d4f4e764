using Updp.Benchmarks;
using Updp.Models;
using Updp.Pruning;
using static TorchSharp.torch;

namespace Updp.Tests.Stages;

/// <summary>
/// The latency budget (docs/METHOD.md#latency-budget): budgets in milliseconds or as a percentage of
/// the unpruned model, predictions on a fixed table, and the check of the prediction on models timed whole.
/// </summary>
public class LatencyBudgetTests
{
    // Merging saves 1, 2, 4 and 0.5 ms of a 50 ms model; dropping saves 3, 5 and 6 ms; block 2 cannot be dropped.
    private static BlockLatencyTable FixedTable(string engine = "onnxruntime") => new()
    {
        Engine = engine,
        Config = ModelConfig.SmallInput("convnext_atto") with { StemStride = 4 },
        Resolution = 32,
        Batch = 1,
        Threads = get_num_threads(),
        Machine = BlockLatencyTable.ThisMachine(),
        ModelMs = 50,
        AllMergedMs = 42.5,
        HasDroppedForms = true,
        Blocks = [new(0, 7, 6, 4), new(1, 8, 6, 3), new(2, 9, 5), new(3, 7, 6.5, 1)],
    };

    [Theory]
    [InlineData("12.5", 12.5, false)]
    [InlineData("12.5ms", 12.5, false)]
    [InlineData(" 3 MS ", 3, false)]
    [InlineData("1e1", 10, false)]
    [InlineData("70%", 70, true)]
    [InlineData("99.5 %", 99.5, true)]
    public void ABudgetIsMillisecondsOrAPercentageOfTheUnprunedModel(string text, double value, bool percent)
    {
        Assert.True(LatencyLimit.TryParse(text, out var limit, out var error), error);
        Assert.Equal(value, limit.Value);
        Assert.Equal(percent, limit.IsPercent);
        Assert.Equal(percent ? value / 100 * 40 : value, limit.Resolve(40), 9);
        Assert.Equal(limit, LatencyLimit.Parse(limit.ToString()));
    }

    [Theory]
    [InlineData("0", "positive number of milliseconds")]
    [InlineData("-3ms", "positive number of milliseconds")]
    [InlineData("1e400", "positive number of milliseconds")]
    [InlineData("100%", "percentage in (0, 100)")]
    [InlineData("0%", "percentage in (0, 100)")]
    [InlineData("70 percent", "got '70 percent'")]
    [InlineData("12,5", "got '12,5'")]
    [InlineData("", "got ''")]
    public void AnythingElseIsRefusedSayingWhatWasExpected(string text, string expected)
    {
        Assert.False(LatencyLimit.TryParse(text, out var limit, out var error));
        Assert.Null(limit);
        Assert.Contains(expected, error);
        Assert.Contains(expected, Assert.Throws<ArgumentException>(() => LatencyLimit.Parse(text)).Message);
    }

    [Fact]
    public void APercentageIsOfTheUnprunedTimeInTheTableOfTheEngineAskedFor()
    {
        using var dir = new TempDir();
        var path = dir.File("latency.json");
        var table = FixedTable();
        BlockLatencyTable.Save(table, path);

        var budget = LatencyBudget.Create(table.Config, 32, LatencyLimit.Parse("70%"), 1, path, out var measured, space: SearchSpace.Mixed, engine: InferenceEngine.OnnxRuntime);

        Assert.False(measured);
        Assert.Equal(35, budget.BudgetMs, 9);
        Assert.Equal(InferenceEngine.OnnxRuntime, budget.Engine);
        Assert.Equal("70%", budget.Limit?.ToString());
        // 35 ms needs 15 ms saved: no pair does (at most 6 + 5), three blocks do only with drops.
        Assert.Equal(3, budget.FewestBlocks([0, 1, 2, 3], SearchSpace.Mixed));
        Assert.True(budget.Fits(new BlockAssignment([2], [0, 1, 3])));
        Assert.False(budget.Fits([0, 1, 2, 3]));
        // A TorchSharp table is not an ONNX Runtime one: the file would be measured again.
        Assert.True(table.IsFor(table.Config, 32, 1, table.Threads, engine: InferenceEngine.OnnxRuntime));
        Assert.False(table.IsFor(table.Config, 32, 1, table.Threads));
        Assert.False(FixedTable("torchsharp").IsFor(table.Config, 32, 1, table.Threads, engine: InferenceEngine.OnnxRuntime));
        Assert.EndsWith("-onnxruntime.json", BlockLatencyTable.DefaultPath(table.Config, 32, 1, engine: InferenceEngine.OnnxRuntime), StringComparison.Ordinal);
    }

    [Fact]
    public void APredictionOnAFixedTableAndItsErrorAgainstAMeasuredTime()
    {
        var table = FixedTable();
        // 0 dropped (−3), 2 merged (−4), 3 merged (−0.5).
        var assignment = new BlockAssignment([2, 3], [0]);
        var predicted = table.Predict(assignment.Merged, assignment.Dropped);
        Assert.Equal(42.5, predicted, 9);

        var over = new LatencyCheck(assignment.Blocks, assignment.Forms, true, predicted, 40);
        var under = new LatencyCheck([1], null, false, table.Predict([1]), 50);
        Assert.Equal(6.25, over.ErrorPct, 9);
        Assert.Equal(-4, under.ErrorPct, 9);
        var report = new LatencyReport(45, 1, 32, 1, null, 50, predicted, 40, 51) { Checks = [over, under] };
        Assert.Equal((6.25 + 4) / 2, report.MeanAbsErrorPct!.Value, 9);
        Assert.Null((report with { Checks = [] }).MeanAbsErrorPct);
    }

    [Fact]
    public void ThePredictionIsCheckedOnTheChosenAssignmentAndSomeDrawnAtRandomTimedWholeInOnnxRuntime()
    {
        var table = FixedTable() with { Blocks = [.. Enumerable.Range(0, 12).Select(i => new BlockLatency(i, 4, 3, 2))] };
        var budget = new LatencyBudget(table, 45) { Limit = LatencyLimit.Parse("90%") };
        var chosen = new BlockAssignment([3], [10]);
        BlockAssignment[] pool = [chosen, BlockAssignment.MergeOnly([1, 2]), new([5], [6]), new([], [7, 8]), BlockAssignment.MergeOnly([0, 11]), chosen];

        var report = budget.Check(chosen, pool, others: 2, seed: 7, runs: 3);

        Assert.Equal("onnxruntime", report.Engine);
        Assert.Equal("90%", report.Requested);
        Assert.Equal(3, report.Checks.Count);
        Assert.True(report.Checks[0].Chosen);
        Assert.Equal(chosen.Blocks, report.Checks[0].Blocks);
        Assert.All(report.Checks.Skip(1), c => Assert.False(c.Chosen));
        // Two different ones, neither of them the chosen one.
        Assert.Equal(2, report.Checks.Skip(1).Select(c => BlockAssignment.FromForms(c.Blocks, c.Forms).Key).Distinct().Count());
        Assert.DoesNotContain(report.Checks.Skip(1), c => BlockAssignment.FromForms(c.Blocks, c.Forms).Equals(chosen));
        Assert.All(report.Checks, c =>
        {
            Assert.Equal(table.Predict(BlockAssignment.FromForms(c.Blocks, c.Forms).Merged, BlockAssignment.FromForms(c.Blocks, c.Forms).Dropped), c.PredictedMs, 9);
            Assert.True(c.MeasuredMs > 0 && double.IsFinite(c.MeasuredMs));
        });
        Assert.Equal(report.Checks[0].PredictedMs, report.PredictedMs);
        Assert.Equal(report.Checks[0].MeasuredMs, report.MeasuredMs);
        Assert.True(report.MeasuredBaselineMs > 0);
        Assert.NotNull(report.MeanAbsErrorPct);

        // The same seed draws the same ones; asking for more than there are checks them all.
        var again = budget.Check(chosen, pool, others: 2, seed: 7, runs: 1);
        Assert.Equal(report.Checks.Select(c => string.Join(",", c.Blocks)), again.Checks.Select(c => string.Join(",", c.Blocks)));
        Assert.Equal(5, budget.Check(chosen, pool, others: 10, seed: 7, runs: 1).Checks.Count);
        Assert.Single(budget.Check(chosen, pool, others: 0, seed: 7, runs: 1).Checks);
    }

    [Theory]
    [InlineData(33.0, "within the budget")]
    [InlineData(38.5, "10.0% over the budget")]
    public void TheReportStatesTheBudgetThePredictionTheMeasurementAndTheChecks(double measured, string verdict)
    {
        var options = new PruneOptions { Checkpoint = "base.safetensors", Settings = new StageSettings { Data = "fashion-mnist" }, OutDir = "out", Blocks = 0 };
        LatencyCheck[] checks = [new([2, 3], new Dictionary<int, string> { [2] = "merge", [3] = "drop" }, true, 34, 32), new([1, 5], null, false, 40, 41)];
        var metrics = new PruneMetrics
        {
            Model = "convnext_atto",
            Method = "mixed",
            Blocks = [2, 3],
            LatencyBudgetMs = 35,
            LatencyBatch = 1,
            LatencyRequested = "70%",
            LatencyEngine = "onnxruntime",
            PredictedLatencyMs = 34,
            MeasuredLatencyMs = measured,
            MeasuredBaselineLatencyMs = 44,
            LatencyModelMs = 50,
            LatencyErrorPct = 100 * (34 - measured) / measured,
            LatencyChecks = checks,
            LatencyMeanAbsErrorPct = (6.25 + (100.0 / 41)) / 2,
        };

        var report = PruneMeasurement.RenderReport(options, metrics);

        Assert.Contains($"Latency budget 35 ms (70% of the unpruned model's) at batch 1 in ONNX Runtime: the subset was predicted at 34.00 ms", report);
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"the merged model measured {measured:F2} ms (prediction error {metrics.LatencyErrorPct:+0.0;-0.0}%), {verdict}."), report);
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"The unpruned model, timed with it, measured 44.00 ms (50.00 ms in the table): the merged model takes {100 * measured / 44:F1}% of its time."), report);
        Assert.Contains("the chosen candidate and 1 drawn at random", report);
        Assert.Contains("mean absolute error 4.3%", report);
        Assert.Contains("| chosen | 2, 3 (drop) | 34.00 | 32.00 | +6.3% |", report);
        Assert.Contains("| random | 1, 5 | 40.00 | 41.00 | -2.4% |", report);
        Assert.Contains("the chosen candidate (the only one checked", PruneMeasurement.RenderReport(options, metrics with { LatencyChecks = [checks[0]] }));
        Assert.DoesNotContain("Latency budget", PruneMeasurement.RenderReport(options, metrics with { LatencyBudgetMs = null }));
    }

    [Fact]
    public void UnderATightBudgetTheSearchStartsFromTheFastestAssignmentWhichRandomDrawsMiss()
    {
        // 16 blocks: merging block i saves i/10 ms of a 100 ms model, dropping it (even blocks only) 3i/10 ms.
        var table = FixedTable() with
        {
            Blocks = [.. Enumerable.Range(0, 16).Select(i => new BlockLatency(i, 5 + (i / 10.0), 5, i % 2 == 0 ? 5 - (i / 5.0) : null))],
            ModelMs = 100,
        };
        int[] candidates = [.. Enumerable.Range(0, 16)];
        int[] droppable = [.. candidates.Where(i => i % 2 == 0)];
        // Only the four best savings together fit: 14, 12, 10 and 8 dropped (4.2 + 3.6 + 3 + 2.4 = 13.2 ms);
        // the next best four (6 dropped for 8) save 12.6 ms.
        var budget = new LatencyBudget(table, 87);
        Assert.Equal(4, budget.FewestBlocks(candidates, SearchSpace.Mixed));
        var fastest = budget.Fastest(candidates, 4, droppable);
        Assert.Equal("8d,10d,12d,14d", fastest.Key);
        Assert.True(budget.Fits(fastest));
        // Odd blocks cannot be dropped, and in the merge-only space nothing is.
        Assert.Equal("12,13,14,15", budget.Fastest(candidates, 4, []).Key);
        Assert.Equal("10d,12d,14d", budget.Fastest(candidates, 3, droppable).Key);

        var strategy = new SearchStrategy { Population = 4, Generations = 2, Seed = 1, ExhaustiveLimit = 0 };
        static double Score(BlockAssignment a) => -a.Blocks.Sum();
        Assert.Contains("no feasible assignment of 4 blocks",
            Assert.Throws<InvalidOperationException>(() => SubnetSearch.ExploreAssignments(candidates, droppable, 4, strategy, Score, budget.Fits)).Message);

        var result = SubnetSearch.ExploreAssignments(candidates, droppable, 4, strategy, Score, budget.Fits, fastest);

        Assert.Equal("evolutionary", result.Method);
        Assert.Equal(["8d,10d,12d,14d"], result.Scored.Select(s => s.Assignment.Key));
        // Where random draws do fill a population the start adds nothing.
        var loose = SubnetSearch.ExploreAssignments(candidates, droppable, 4, strategy, Score, null, fastest);
        Assert.Equal(SubnetSearch.ExploreAssignments(candidates, droppable, 4, strategy, Score).Scored.Select(s => s.Assignment.Key),
            loose.Scored.Select(s => s.Assignment.Key));
    }
}
