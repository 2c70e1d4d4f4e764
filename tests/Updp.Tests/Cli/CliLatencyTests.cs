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
    public void SearchWithALatencyBudgetChoosesTheFewestBlocksAndScoresOnlySubsetsThatFit()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var table = SyntheticLatencyTable(dir, baseline);
        var run = dir.File("search");

        var (code, stdout, err) = Run("search", "--checkpoint", baseline, "--data", "fashion-mnist", "--latency-budget", "79", "--latency-table", table,
            "--out", run, "--val-limit", "50", "--calibration-batches", "1");
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

        // A budget nothing can reach is refused before anything is scored or written.
        (code, _, err) = Run("search", "--checkpoint", baseline, "--latency-budget", "20", "--latency-table", table, "--out", dir.File("none"));
        Assert.Equal(2, code);
        Assert.Contains("larger budget", err);
        Assert.False(Directory.Exists(dir.File("none")));
    }
}
