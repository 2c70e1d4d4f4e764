using System.Text.Json;
using Updp.Benchmarks;
using Updp.Checkpoints;
using static TorchSharp.torch;

namespace Updp.Tests.Cli;

/// <summary><c>--latency-budget</c> of <c>updp search</c>, with a latency table whose numbers the test chose.</summary>
public partial class CliTests
{
    // Block i saves i ms of a 100 ms model: a budget of 79 ms needs blocks 11 and 10 (21 ms), and no other pair fits.
    private static string SyntheticLatencyTable(TempDir dir, string checkpoint)
    {
        var config = Checkpoint.ReadMeta(checkpoint)!.Model!;
        var table = new BlockLatencyTable
        {
            Config = config,
            Resolution = 32,
            Batch = 1,
            Threads = get_num_threads(),
            Machine = BlockLatencyTable.ThisMachine(),
            ModelMs = 100,
            AllMergedMs = 34,
            Blocks = [.. Enumerable.Range(0, 12).Select(i => new BlockLatency(i, 10 + i, 10))],
        };
        var path = dir.File("latency.json");
        BlockLatencyTable.Save(table, path);
        return path;
    }

    [Fact]
    public void AMixedSearchMeetsABudgetWithFewerBlocksByDroppingSome()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var config = Checkpoint.ReadMeta(baseline)!.Model!;
        // Merging block i saves i ms of a 100 ms model, dropping it 1.5·i ms: a budget of 75 ms needs 25 ms,
        // which no two merges save (at most 21, so the merge-only space needs three blocks) but two blocks do
        // when at least one of them is dropped.
        var path = dir.File("latency.json");
        BlockLatencyTable.Save(new BlockLatencyTable
        {
            Engine = "onnxruntime",
            Config = config,
            Resolution = 32,
            Batch = 1,
            Threads = get_num_threads(),
            Machine = BlockLatencyTable.ThisMachine(),
            ModelMs = 100,
            AllMergedMs = 34,
            HasDroppedForms = true,
            Blocks = [.. Enumerable.Range(0, 12).Select(i => new BlockLatency(i, 10 + i, 10, 10 - (0.5 * i)))],
        }, path);
        var run = dir.File("search");

        // 75% of the unpruned model's 100 ms, on ONNX Runtime (the default engine, the table's).
        var (code, stdout, err) = Run("search", "--checkpoint", baseline, "--data", "fashion-mnist", "--method", "mixed", "--latency-budget", "75%",
            "--latency-table", path, "--out", run, "--val-limit", "50", "--calibration-batches", "1", "--population", "3", "--generations", "1");

        Assert.True(code == 0, err);
        Assert.Contains("reused", stdout);
        using var search = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "search.json")));
        var root = search.RootElement;
        Assert.Equal(2, root.GetProperty("pruned_blocks").GetInt32());
        Assert.Equal("mixed", root.GetProperty("space").GetString());
        var candidates = root.GetProperty("candidates").EnumerateArray().ToList();
        Assert.InRange(candidates.Count, 3, 6);
        Assert.All(candidates, c =>
        {
            var forms = Forms(c);
            var predicted = 100 - forms.Sum(f => f.Value == "drop" ? 1.5 * f.Key : f.Key);
            Assert.Equal(predicted, c.GetProperty("latency_ms").GetDouble(), 9);
            Assert.True(predicted <= 75, string.Join(",", forms));
            Assert.Contains("drop", forms.Values);
        });
        var latency = root.GetProperty("latency");
        Assert.Equal(candidates[0].GetProperty("latency_ms").GetDouble(), latency.GetProperty("predicted_ms").GetDouble(), 9);
        Assert.Equal(75, latency.GetProperty("budget_ms").GetDouble(), 9);
        Assert.Equal("75%", latency.GetProperty("requested").GetString());
        Assert.Equal("onnxruntime", latency.GetProperty("engine").GetString());
        // The prediction checked on the chosen assignment and three others drawn among the scored ones, each timed whole in ONNX Runtime.
        var checks = latency.GetProperty("checks").EnumerateArray().ToList();
        Assert.Equal(Math.Min(4, candidates.Count), checks.Count);
        Assert.True(checks[0].GetProperty("chosen").GetBoolean());
        Assert.Equal(Forms(candidates[0]), Forms(checks[0]));
        Assert.All(checks.Skip(1), c => Assert.False(c.GetProperty("chosen").GetBoolean()));
        Assert.All(checks, c =>
        {
            var forms = c.TryGetProperty("forms", out _) ? Forms(c) : new SortedDictionary<int, string>(c.GetProperty("blocks").EnumerateArray().ToDictionary(b => b.GetInt32(), _ => "merge"));
            Assert.Equal(100 - forms.Sum(f => f.Value == "drop" ? 1.5 * f.Key : f.Key), c.GetProperty("predicted_ms").GetDouble(), 9);
            var measured = c.GetProperty("measured_ms").GetDouble();
            Assert.True(measured > 0);
            Assert.Equal(100 * (c.GetProperty("predicted_ms").GetDouble() - measured) / measured, c.GetProperty("error_pct").GetDouble(), 6);
        });
        Assert.Equal(checks.Average(c => Math.Abs(c.GetProperty("error_pct").GetDouble())), latency.GetProperty("mean_abs_error_pct").GetDouble(), 6);
        Assert.Contains("prediction error on", stdout);
        // The table's block times stay with the search, and its figures are drawn next to search.json.
        Assert.Equal(12, latency.GetProperty("blocks").GetArrayLength());
        Assert.Equal(Updp.Cli.Reports.Figures.FrontierSize, PngSize(File.ReadAllBytes(Path.Combine(run, "frontier.png"))));
        Assert.Equal(Updp.Cli.Reports.Figures.BlockLatencySize, PngSize(File.ReadAllBytes(Path.Combine(run, "block_latency.png"))));
        Assert.Contains("frontier.png", stdout);

        // The merge-only space needs a third block for the same budget.
        (code, _, err) = Run("search", "--checkpoint", baseline, "--data", "fashion-mnist", "--latency-budget", "75", "--latency-table", path,
            "--out", dir.File("updp"), "--val-limit", "50", "--calibration-batches", "1", "--population", "3", "--generations", "1");
        Assert.True(code == 0, err);
        using var merged = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("updp"), "search.json")));
        Assert.Equal(3, merged.RootElement.GetProperty("pruned_blocks").GetInt32());
        Assert.False(merged.RootElement.TryGetProperty("space", out _));
    }

    [Fact]
    public void SearchWithALatencyBudgetChoosesTheFewestBlocksAndScoresOnlySubsetsThatFit()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var table = SyntheticLatencyTable(dir, baseline);
        var run = dir.File("search");

        var (code, stdout, err) = Run("search", "--checkpoint", baseline, "--data", "fashion-mnist", "--latency-budget", "79ms", "--latency-engine", "torchsharp",
            "--latency-table", table, "--out", run, "--val-limit", "50", "--calibration-batches", "1");
        Assert.True(code == 0, err);
        Assert.Contains("reused", stdout);
        using var search = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "search.json")));
        var root = search.RootElement;
        Assert.Equal(2, root.GetProperty("pruned_blocks").GetInt32());
        Assert.True(root.GetProperty("constrained").GetBoolean());
        var candidates = root.GetProperty("candidates").EnumerateArray().ToList();
        var only = Assert.Single(candidates);
        Assert.Equal([10, 11], only.GetProperty("blocks").EnumerateArray().Select(b => b.GetInt32()));
        Assert.Equal(79, only.GetProperty("latency_ms").GetDouble(), 9);
        var latency = root.GetProperty("latency");
        Assert.Equal(79, latency.GetProperty("budget_ms").GetDouble());
        Assert.Equal(79, latency.GetProperty("predicted_ms").GetDouble(), 9);
        Assert.True(latency.GetProperty("measured_ms").GetDouble() > 0);
        Assert.True(latency.GetProperty("measured_baseline_ms").GetDouble() > 0);
        Assert.Equal("torchsharp", latency.GetProperty("engine").GetString());
        // Only one subset fits, so the chosen one is the only one checked.
        var check = Assert.Single(latency.GetProperty("checks").EnumerateArray());
        Assert.Equal(latency.GetProperty("measured_ms").GetDouble(), check.GetProperty("measured_ms").GetDouble());

        // A budget nothing can reach is refused before anything is scored or written.
        (code, _, err) = Run("search", "--checkpoint", baseline, "--latency-budget", "20", "--latency-engine", "torchsharp", "--latency-table", table, "--out", dir.File("none"));
        Assert.Equal(2, code);
        Assert.Contains("larger budget", err);
        Assert.False(Directory.Exists(dir.File("none")));
    }
}
