using System.Text.Json;
using Updp.Checkpoints;
using Updp.Pruning.Blocks;
using Updp.Tests.Pruning;

namespace Updp.Tests.Cli;

public partial class CliTests
{
    [Fact]
    public void BenchTimesOriginalAndMergedOnBothEnginesWithTheSpeedup()
    {
        var (code, stdout, err) = Run("bench", "--model", "convnext_atto", "--resolution", "32", "--batch", "1,2", "--engine", "torchsharp,onnxruntime",
            "--pruned", "2,3,6", "--runs", "3", "--warmup", "1", "--threads", "1", "--json");

        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(stdout);
        var rows = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(8, rows.Count); // 2 engines × 2 batches × (original, merged)
        foreach (var engine in new[] { "torchsharp", "onnxruntime" })
        {
            foreach (var batch in new[] { 1, 2 })
            {
                var pair = rows.Where(r => r.GetProperty("engine").GetString() == engine && r.GetProperty("batch").GetInt32() == batch).ToList();
                Assert.Equal(["original", "merged 2,3,6"], pair.Select(r => r.GetProperty("variant").GetString()));
                Assert.Equal(JsonValueKind.Null, pair[0].GetProperty("speedup").ValueKind);
                // The median of paired run-time ratios (LatencyStats.PairedSpeedup, tested there).
                var speedup = pair[1].GetProperty("speedup").GetDouble();
                Assert.True(speedup > 0 && double.IsFinite(speedup), $"speed-up {speedup}");
                Assert.True(pair[1].GetProperty("macs").GetInt64() < pair[0].GetProperty("macs").GetInt64());
                foreach (var r in pair)
                {
                    Assert.Equal(1, r.GetProperty("threads").GetInt32());
                    Assert.Equal(3, r.GetProperty("runs").GetInt32());
                    var (p10, median, p90) = (r.GetProperty("p10_ms").GetDouble(), r.GetProperty("median_ms").GetDouble(), r.GetProperty("p90_ms").GetDouble());
                    Assert.True(0 < p10 && p10 <= median && median <= p90, $"{p10} ≤ {median} ≤ {p90}");
                    Assert.Equal(batch * 1000 / median, r.GetProperty("images_per_second").GetDouble(), 6);
                }
            }
        }
    }

    [Fact]
    public void BenchOfAMergedCheckpointComparesItWithTheUnprunedModel()
    {
        using var dir = new TempDir();
        var merged = dir.File("merged.safetensors");
        using (var model = PruningTestSupport.Atto(seed: 2))
        {
            PruningTestSupport.Prune(model, [4, 5], lambda: 1, seed: 2);
            Merger.MergeAll(model, [PruningTestSupport.Input(1)]);
            Checkpoint.Save(model, merged, PrunedModels.Describe(model));
        }

        var (code, stdout, err) = Run("bench", "--checkpoint", merged, "--resolution", "32", "--batch", "1", "--engine", "onnxruntime",
            "--runs", "2", "--warmup", "0", "--threads", "1", "--json");

        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(stdout);
        var rows = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(["original (random)", "merged 4,5"], rows.Select(r => r.GetProperty("variant").GetString()));
        Assert.All(rows, r => Assert.Equal("onnxruntime", r.GetProperty("engine").GetString()));
        Assert.True(rows[1].GetProperty("speedup").GetDouble() > 0);
    }

    [Fact]
    public void BenchTrainModeStillWorks()
    {
        var (code, stdout, err) = Run("bench", "--model", "convnext_atto", "--resolution", "32", "--batch", "2", "--mode", "train", "--runs", "2",
            "--warmup", "0", "--threads", "1", "--json");

        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(stdout);
        var row = doc.RootElement.EnumerateArray().Single();
        Assert.Equal("train", row.GetProperty("mode").GetString());
        Assert.True(row.GetProperty("median_ms").GetDouble() > 0);
    }

    [Theory]
    [InlineData("bench --model convnext_nope", "convnext_nope")]
    [InlineData("bench --model convnext_atto --pruned 3,99", "block 99 is out of range")]
    [InlineData("bench --model convnext_atto --pruned 3,3", "block 3 is listed more than once")]
    [InlineData("bench --model convnext_atto --pruned 3,x", "'x' is not a block index")]
    [InlineData("bench --checkpoint GARBAGE --model convnext_atto", "garbage.pt")]
    [InlineData("bench --checkpoint /nonexistent/m.safetensors", "/nonexistent/m.safetensors")]
    [InlineData("bench --model convnext_atto --engine tensorrt", "--engine 'tensorrt'")]
    [InlineData("bench --model convnext_atto --mode train --engine onnxruntime", "--mode train")]
    public void BenchBadInputGetsAClearErrorAndPrintsNoResults(string args, string mentioned)
    {
        using var dir = new TempDir();
        var garbage = dir.Write("garbage.pt", [1, 2, 3, 4]);
        var argv = args.Split(' ').Select(a => a == "GARBAGE" ? garbage : a).Concat(["--runs", "1", "--warmup", "0", "--batch", "1"]).ToArray();

        var (code, stdout, err) = Run(argv);

        Assert.Equal(2, code);
        Assert.StartsWith("error: ", err.TrimStart());
        Assert.Contains(mentioned, err.Replace("\n", "", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", err);
        Assert.Equal("", stdout);
        Assert.Equal(["garbage.pt"], dir.Files());
    }
}
