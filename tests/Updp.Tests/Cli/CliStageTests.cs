using System.Globalization;
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

    [Fact]
    public void PruneMixedChoosesAFormPerBlockAndWritesAVerifiedMergedModel()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var run = dir.File("mixed");
        string[] args = ["prune", "--checkpoint", baseline, "--blocks", "3", "--method", "mixed", "--out", run, "--supernet-epochs", "1",
            "--finetune-epochs", "2", "--ramp", "0.75", "--search-population", "4", "--search-generations", "1", "--search-val-limit", "100",
            "--latency-runs", "2", "--distill", "none", .. Quick];
        var (code, stdout, err) = Run(args);
        Assert.True(code == 0, err);

        // The supernet drew merge or drop per block; every ConvNeXt block may be dropped.
        using (var supernet = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "supernet", "metrics.json"))))
        {
            Assert.Equal("mixed", supernet.RootElement.GetProperty("space").GetString());
            Assert.Equal(12, supernet.RootElement.GetProperty("droppable").GetArrayLength());
        }
        // The search ranks assignments: K blocks, each with its form.
        using var search = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "search.json")));
        Assert.Equal("mixed", search.RootElement.GetProperty("space").GetString());
        Assert.Equal(Updp.Pruning.SubnetSearch.AssignmentCount(12, 12, 3), search.RootElement.GetProperty("subsets").GetInt64());
        var candidates = search.RootElement.GetProperty("candidates").EnumerateArray().ToList();
        Assert.InRange(candidates.Count, 4, 8);
        Assert.All(candidates, c =>
        {
            var blocks = c.GetProperty("blocks").EnumerateArray().Select(b => b.GetInt32()).ToList();
            var forms = c.GetProperty("forms").EnumerateObject().ToDictionary(f => int.Parse(f.Name, CultureInfo.InvariantCulture), f => f.Value.GetString());
            Assert.Equal(3, blocks.Count);
            Assert.Equal(blocks, forms.Keys.Order());
            Assert.All(forms.Values, f => Assert.Contains(f, new[] { "merge", "drop" }));
        });
        Assert.Contains(candidates, c => c.GetProperty("forms").EnumerateObject().Any(f => f.Value.GetString() == "drop"));
        var best = candidates[0];
        var dropped = Forms(best).Where(f => f.Value == "drop").Select(f => f.Key).ToList();
        var merged = Forms(best).Where(f => f.Value == "merge").Select(f => f.Key).ToList();

        // Stage 3 fine-tuned that assignment; the merge stage merged and dropped it and checked the result.
        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))))
        {
            var m = metrics.RootElement;
            Assert.Equal("mixed", m.GetProperty("method").GetString());
            Assert.Equal(Forms(best), Forms(m));
            Assert.Equal(best.GetProperty("macs").GetInt64(), m.GetProperty("macs").GetInt64());
            Assert.Equal(best.GetProperty("params").GetInt64(), m.GetProperty("params").GetInt64());
            Assert.InRange(m.GetProperty("merge_max_abs_diff").GetDouble(), 0, m.GetProperty("merge_tolerance").GetDouble());
            Assert.InRange(m.GetProperty("onnx_relative_diff").GetDouble(), 0, 1e-4);
        }
        using (var finetune = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "finetune", "metrics.json"))))
        {
            Assert.Equal(Forms(best), Forms(finetune.RootElement));
            Assert.Equal(2, finetune.RootElement.GetProperty("best_epoch").GetInt32());
        }
        var pruned = PruningState.FromMeta(Checkpoint.ReadMeta(Path.Combine(run, "finetune", "pruned.safetensors")))!;
        Assert.Equal(merged, pruned.Pruned.Keys.Order());
        Assert.All(pruned.Pruned.Values, l => Assert.Equal(1, l));
        Assert.Equal(dropped, (pruned.Fading ?? new Dictionary<int, double>()).Keys.Order());
        var state = PruningState.FromMeta(Checkpoint.ReadMeta(Path.Combine(run, "merged.safetensors")))!;
        Assert.Equal(merged, state.Merged);
        Assert.Equal(dropped, state.Dropped);
        var report = File.ReadAllText(Path.Combine(run, "report.md"));
        Assert.Contains("| block | form |", report);
        Assert.All(dropped, b => Assert.Contains($"| {b} | dropped |", report));
        Assert.All(merged, b => Assert.Contains($"| {b} | merged |", report));

        // A second run finds every stage done, the mixed ones included.
        (code, stdout, err) = Run(args);
        Assert.True(code == 0, err);
        foreach (var stage in new[] { "supernet", "search", "finetune", "merge" })
        {
            Assert.Contains($"{stage}: skipped", stdout);
        }
    }

    [Fact]
    public void MergeDropsTheFadedBlocksOfAMixedCheckpoint()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var loaded = Checkpoint.Load(baseline, options: PrunedModels.LoadOptions);
        var pruned = dir.File("mixed/pruned.safetensors");
        using (var model = loaded.Model)
        {
            model.Prune(4).Lambda = 1;
            model.Fade(7).Lambda = 1;
            Checkpoint.Save(model, pruned, PrunedModels.Describe(model, loaded.Meta));
        }
        var merged = dir.File("merged.safetensors");

        var (code, stdout, err) = Run("merge", "--checkpoint", pruned, "--out", merged, "--check-images", "64");

        Assert.True(code == 0, err);
        Assert.Contains("merged blocks 4, dropped 7", stdout);
        var meta = Checkpoint.ReadMeta(merged)!;
        Assert.InRange(meta.Metrics["merge_max_abs_diff"], 0, meta.Metrics["merge_tolerance"]);
        var state = PruningState.FromMeta(meta)!;
        Assert.Equal([4], state.Merged);
        Assert.Equal([7], state.Dropped);
        Assert.Null(state.Fading);
    }

    // A candidate's (or a run's) forms: block → merge | drop, in block order.
    private static SortedDictionary<int, string> Forms(JsonElement element) =>
        new(element.GetProperty("forms").EnumerateObject().ToDictionary(f => int.Parse(f.Name, CultureInfo.InvariantCulture), f => f.Value.GetString()!));

    [Theory]
    [InlineData("finetune --checkpoint BASE --pruned 3,x --out OUT", "'3,x'")]
    [InlineData("supernet --checkpoint BASE --max-pruned 2 --method drop --out OUT", "'drop'")]
    [InlineData("search --checkpoint BASE --blocks 2 --method fold --out OUT", "'fold'")]
    [InlineData("finetune --checkpoint BASE --pruned 1,2 --dropped 2 --out OUT", "--dropped")]
    [InlineData("finetune --checkpoint BASE --pruned 1,2 --method mixed --dropped 5 --out OUT", "block 5")]
    [InlineData("prune --checkpoint BASE --blocks 2 --method mixd --out OUT", "'mixd'")]
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
