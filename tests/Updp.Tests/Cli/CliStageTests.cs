using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Tests.Cli;

/// <summary>The stage verbs and <c>updp prune</c> on a slice of Fashion-MNIST, a few steps each.</summary>
public partial class CliTests
{
    // Every training stage: 256 training images, 2 steps of 32, BN calibration on one batch.
    private static readonly string[] Quick = ["--data", "fashion-mnist", "--train-limit", "256", "--max-steps", "2", "--batch-size", "32", "--calibration-batches", "1"];

    /// <summary>A baseline as <c>updp train</c> leaves it: a random small-input convnext_atto with its sidecar (200 validation images).</summary>
    private static string SmallBaseline(TempDir dir)
    {
        var path = dir.File("baseline/model.safetensors");
        manual_seed(1);
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto") with { StemStride = 4, LayerScaleInit = 0.1 });
        Checkpoint.Save(model, path, new ValidationSplit(200, 5).AddTo(new CheckpointMeta
        {
            Classes = DatasetCatalog.FashionMnistClassNames,
            Preprocessing = new Preprocessing(28, 32, Normalization.FashionMnist.Mean, Normalization.FashionMnist.Std),
        }));
        return path;
    }

    [Fact]
    public void SupernetSearchFinetuneAndMergeVerbsChainIntoAVerifiedMergedModel()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var run = dir.File("run");

        var (code, _, err) = Run([.. "supernet --checkpoint".Split(' '), baseline, "--epochs", "1", "--max-pruned", "2", "--out", run, .. Quick]);
        Assert.True(code == 0, err);
        var supernet = Path.Combine(run, "supernet.safetensors");
        Assert.True(File.Exists(supernet));
        Assert.True(File.Exists(Path.Combine(run, "metrics.json")));

        // 66 subsets of 2 among 12 > 3·(1+1): evolutionary.
        (code, var stdout, err) = Run("search", "--checkpoint", supernet, "--data", "fashion-mnist", "--blocks", "2", "--out", run,
            "--population", "3", "--generations", "1", "--seed", "1", "--val-limit", "100", "--calibration-batches", "1");
        Assert.True(code == 0, err);
        Assert.Contains("evolutionary", stdout);
        using var search = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "search.json")));
        Assert.Equal(2, search.RootElement.GetProperty("pruned_blocks").GetInt32());
        // A second search into the same directory does not replace the first's result without --force.
        (code, _, err) = Run("search", "--checkpoint", supernet, "--data", "fashion-mnist", "--blocks", "1", "--out", run);
        Assert.Equal(2, code);
        Assert.Contains("search.json' exists; give --force", err);
        var ranked = search.RootElement.GetProperty("candidates").EnumerateArray().ToList();
        Assert.InRange(ranked.Count, 3, 6);
        Assert.All(ranked, c =>
        {
            var blocks = c.GetProperty("blocks").EnumerateArray().Select(b => b.GetInt32()).ToList();
            Assert.Equal(2, blocks.Distinct().Count());
            Assert.All(blocks, b => Assert.InRange(b, 0, 11));
            Assert.True(c.GetProperty("macs").GetInt64() > 0 && c.GetProperty("params").GetInt64() > 0);
        });
        var scores = ranked.Select(c => c.GetProperty("val_top1").GetDouble()).ToList();
        Assert.Equal(scores.OrderDescending(), scores);
        var best = string.Join(",", ranked[0].GetProperty("blocks").EnumerateArray().Select(b => b.GetInt32()));

        var finetune = dir.File("updp");
        (code, _, err) = Run([.. "finetune --checkpoint".Split(' '), supernet, "--pruned", best, "--epochs", "1", "--method", "updp",
            "--init", "supernet", "--ramp", "0.5", "--distill", baseline, "--out", finetune, .. Quick]);
        Assert.True(code == 0, err);
        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(finetune, "metrics.json"))))
        {
            Assert.Equal("updp", metrics.RootElement.GetProperty("method").GetString());
            Assert.Equal("supernet", metrics.RootElement.GetProperty("init").GetString());
            Assert.Equal(ranked[0].GetProperty("macs").GetInt64(), metrics.RootElement.GetProperty("macs").GetInt64());
        }

        var merged = dir.File("merged.safetensors");
        (code, _, err) = Run("merge", "--checkpoint", Path.Combine(finetune, "pruned.safetensors"), "--out", merged, "--check-images", "64");
        Assert.True(code == 0, err);
        var meta = Checkpoint.ReadMeta(merged)!;
        Assert.InRange(meta.Metrics["merge_max_abs_diff"], 0, meta.Metrics["merge_tolerance"]);
        Assert.Equal(best, string.Join(",", PruningState.FromMeta(meta)!.Merged));
    }

    [Fact]
    public void PruneRunsTheFourStagesAndAResumeWithTheSameSettingsSkipsThemAll()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var run = dir.File("prune");
        string[] Args(int k, string outDir) => ["prune", "--checkpoint", baseline, "--blocks", $"{k}", "--method", "drop", "--out", outDir, "--supernet-epochs", "1",
            "--finetune-epochs", "1", "--search-population", "3", "--search-generations", "1", "--search-val-limit", "100", "--latency-runs", "2", .. Quick];
        var args = Args(2, run);
        var (code, stdout, err) = Run(args);
        Assert.True(code == 0, err);
        Assert.DoesNotContain("skipped", stdout);
        string[] outputs = ["supernet/supernet.safetensors", "search.json", "finetune/pruned.safetensors", "merged.safetensors", "model.onnx", "metrics.json", "report.md"];
        var written = outputs.ToDictionary(f => f, f => File.GetLastWriteTimeUtc(Path.Combine(run, f)));
        Assert.All(outputs, f => Assert.True(File.Exists(Path.Combine(run, f)), f));
        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))))
        {
            var m = metrics.RootElement;
            Assert.Equal("drop", m.GetProperty("method").GetString());
            // Distillation from the baseline is prune's default.
            Assert.Equal(baseline, m.GetProperty("distill").GetString());
            Assert.Equal(2, m.GetProperty("blocks").GetArrayLength());
            Assert.InRange(m.GetProperty("baseline_top1").GetDouble(), 0, 1);
            Assert.InRange(m.GetProperty("top1").GetDouble(), 0, 1);
            Assert.True(m.GetProperty("params").GetInt64() < m.GetProperty("baseline_params").GetInt64());
            Assert.True(m.GetProperty("macs").GetInt64() < m.GetProperty("baseline_macs").GetInt64());
            Assert.InRange(m.GetProperty("merge_max_abs_diff").GetDouble(), 0, m.GetProperty("merge_tolerance").GetDouble());
            foreach (var key in new[] { "baseline_latency_ms_b1", "latency_ms_b1", "baseline_latency_ms_b32", "latency_ms_b32", "speedup", "speedup_b32",
                "onnx_baseline_latency_ms_b1", "onnx_latency_ms_b1", "onnx_baseline_latency_ms_b32", "onnx_latency_ms_b32", "onnx_speedup", "onnx_speedup_b32" })
            {
                Assert.True(m.GetProperty(key).GetDouble() > 0, key);
            }
            Assert.InRange(m.GetProperty("onnx_relative_diff").GetDouble(), 0, 1e-4);
        }
        Assert.Contains("| merged |", File.ReadAllText(Path.Combine(run, "report.md")));
        Assert.Contains($"distilled from `{baseline}`", File.ReadAllText(Path.Combine(run, "report.md")));
        Assert.Contains("in ONNX Runtime", File.ReadAllText(Path.Combine(run, "report.md")));
        // The ONNX file is the merged model: a fresh session on it agrees with the merged checkpoint.
        using (var mergedModel = Checkpoint.Load(Path.Combine(run, "merged.safetensors"), options: PrunedModels.LoadOptions).Model)
        using (var session = new InferenceSession(Path.Combine(run, "model.onnx")))
        {
            var x = randn(3, 1, 32, 32, generator: new Generator(5));
            using var value = OrtValue.CreateTensorValueFromMemory(x.data<float>().ToArray(), x.shape);
            using var results = session.Run(new RunOptions(), ["input"], [value], ["logits"]);
            var actual = results[0].GetTensorDataAsSpan<float>().ToArray();
            using var _ = no_grad();
            var expected = mergedModel.call(x).data<float>().ToArray();
            var relative = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max() / Math.Max(1, expected.Max(Math.Abs));
            Assert.True(relative <= 1e-4, $"relative difference {relative}");
        }

        // A finished run is not run into again, nor resumed with other settings; no file is touched.
        (code, _, err) = Run(args);
        Assert.Equal(2, code);
        Assert.Contains("holds a finished prune run", err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        (code, _, err) = Run([.. args, "--resume", "--seed", "1", "--lr", "0.001"]);
        Assert.Equal(2, code);
        Assert.Contains("finetune_lr: 0.0002 → 0.001", err);
        Assert.Contains("finetune_seed: 0 → 1", err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        // One process at a time, whatever the settings.
        using (RunLock.Acquire(run, "updp prune"))
        {
            (code, _, err) = Run([.. args, "--resume"]);
            Assert.Equal(2, code);
            Assert.Contains($"is in use by pid {Environment.ProcessId} (updp prune)", err);
        }

        // Nothing left to do: with --resume every stage is skipped and no file is rewritten.
        (code, stdout, err) = Run([.. args, "--resume"]);
        Assert.True(code == 0, err);
        foreach (var stage in new[] { "supernet", "search", "finetune", "merge" })
        {
            Assert.Contains($"{stage}: skipped", stdout);
        }
        Assert.All(outputs, f => Assert.Equal(written[f], File.GetLastWriteTimeUtc(Path.Combine(run, f))));

        // Another K from the same supernet (what the demo does): stage 1 is not run again.
        var other = dir.File("prune-k1");
        var supernet = Path.Combine(run, "supernet", "supernet.safetensors");
        (code, stdout, err) = Run([.. Args(1, other), "--supernet", supernet, "--distill", "none"]);
        Assert.True(code == 0, err);
        Assert.Contains("supernet: skipped", stdout);
        Assert.False(Directory.Exists(Path.Combine(other, "supernet")));
        using var search = JsonDocument.Parse(File.ReadAllText(Path.Combine(other, "search.json")));
        Assert.Equal(1, search.RootElement.GetProperty("pruned_blocks").GetInt32());
        Assert.Equal(supernet, search.RootElement.GetProperty("checkpoint").GetString());
        Assert.Equal(written[outputs[0]], File.GetLastWriteTimeUtc(supernet));
        using var otherMetrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(other, "metrics.json")));
        Assert.Equal(JsonValueKind.Null, otherMetrics.RootElement.GetProperty("distill").ValueKind);
        Assert.Contains("no distillation", File.ReadAllText(Path.Combine(other, "report.md")));
    }

    [Theory]
    [InlineData("finetune --checkpoint BASE --pruned 3,x --out OUT", "'3,x'")]
    [InlineData("finetune --checkpoint BASE --pruned 3,99 --out OUT", "99")]
    [InlineData("finetune --checkpoint BASE --pruned 1,2 --method fold --out OUT", "'fold'")]
    [InlineData("finetune --checkpoint BASE --pruned 1,2 --init supernet --out OUT", "not a supernet")]
    [InlineData("search --checkpoint BASE --blocks 99 --out OUT", "99")]
    [InlineData("supernet --checkpoint BASE --max-pruned 99 --out OUT", "99")]
    [InlineData("supernet --checkpoint BASE --max-pruned 2 --train-limit 16 --batch-size 32 --out OUT", "--batch-size 32 is larger than the 16 training images")]
    [InlineData("finetune --checkpoint BASE --pruned 1,2 --train-limit 16 --batch-size 32 --out OUT", "--batch-size 32 is larger than the 16 training images")]
    [InlineData("supernet --checkpoint /nonexistent/base.safetensors --max-pruned 2 --out OUT", "/nonexistent/base.safetensors")]
    [InlineData("prune --checkpoint BASE --blocks 99 --out OUT", "99")]
    [InlineData("prune --checkpoint BASE --blocks 2 --candidates 1,2,x --out OUT", "'x'")]
    [InlineData("prune --checkpoint BASE --blocks 2 --supernet BASE --out OUT", "expected a supernet")]
    [InlineData("search --checkpoint BASE --out OUT", "--latency-budget")]
    [InlineData("prune --checkpoint BASE --out OUT", "--latency-budget")]
    [InlineData("prune --checkpoint BASE --blocks 2 --distill /nonexistent/teacher.safetensors --out OUT", "/nonexistent/teacher.safetensors")]
    [InlineData("search --checkpoint BASE --latency-budget -3 --out OUT", "-3")]
    public void BadStageInputGetsOneClearLineExitCode2AndNoOutput(string args, string mentioned)
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var argv = args.Split(' ').Select(a => a == "BASE" ? baseline : a == "OUT" ? dir.File("out") : a).ToArray();
        var (code, _, err) = Run(argv);
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", err.TrimStart());
        Assert.Contains(mentioned, err.Replace("\n", "", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", err);
        Assert.False(Directory.Exists(dir.File("out")) && Directory.EnumerateFileSystemEntries(dir.File("out")).Any());
    }
}
