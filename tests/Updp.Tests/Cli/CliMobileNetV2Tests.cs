using System.Text.Json;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Tests.Cli;

/// <summary>The tool on MobileNetV2: the same verbs, no family-specific options.</summary>
public partial class CliTests
{
    /// <summary>A random small-input mobilenetv2_050 (stem stride 1) with the sidecar `updp train` writes (200 validation images).</summary>
    private static string MobileNetBaseline(TempDir dir)
    {
        var path = dir.File("mbv2/model.safetensors");
        manual_seed(2);
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("mobilenetv2_050"));
        Checkpoint.Save(model, path, new ValidationSplit(200, 5).AddTo(new CheckpointMeta
        {
            Classes = DatasetCatalog.FashionMnistClassNames,
            Preprocessing = new Preprocessing(28, 32, Normalization.FashionMnist.Mean, Normalization.FashionMnist.Std),
        }));
        return path;
    }

    [Fact]
    public void InfoCountsMobileNetV2AsTorchvisionDoes()
    {
        var (code, stdout, err) = Run("info", "--model", "mobilenetv2_100", "--json");
        Assert.True(code == 0, err);
        using var json = JsonDocument.Parse(stdout);
        Assert.Equal(3_504_872, json.RootElement.GetProperty("params").GetInt64());
        Assert.Equal(17, json.RootElement.GetProperty("blocks").GetArrayLength());
        Assert.Equal("features.1", json.RootElement.GetProperty("blocks")[0].GetProperty("path").GetString());
    }

    [Fact]
    public void PruneRunsEndToEndOnMobileNetV2()
    {
        using var dir = new TempDir();
        var baseline = MobileNetBaseline(dir);
        var run = dir.File("prune");
        var (code, stdout, err) = Run(["prune", "--checkpoint", baseline, "--blocks", "2", "--out", run, "--supernet-epochs", "1", "--finetune-epochs", "1",
            "--search-population", "3", "--search-generations", "1", "--search-val-limit", "100", "--latency-runs", "2", .. Quick]);
        Assert.True(code == 0, err);
        Assert.Contains("merge: done", stdout);
        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))))
        {
            var m = metrics.RootElement;
            Assert.Equal("updp", m.GetProperty("method").GetString());
            Assert.Equal(2, m.GetProperty("blocks").GetArrayLength());
            Assert.InRange(m.GetProperty("top1").GetDouble(), 0, 1);
            Assert.Equal(700_202, m.GetProperty("baseline_params").GetInt64());
            Assert.NotEqual(m.GetProperty("baseline_macs").GetInt64(), m.GetProperty("macs").GetInt64());
            Assert.InRange(m.GetProperty("merge_max_abs_diff").GetDouble(), 0, m.GetProperty("merge_tolerance").GetDouble());
            // model.onnx of the merged model, checked in ONNX Runtime, and both engines timed.
            Assert.True(File.Exists(Path.Combine(run, "model.onnx")));
            Assert.False(m.TryGetProperty("onnx_skipped", out _));
            Assert.InRange(m.GetProperty("onnx_relative_diff").GetDouble(), 0, 1e-4);
            Assert.True(m.GetProperty("onnx_latency_ms_b1").GetDouble() > 0);
        }
        var merged = Checkpoint.Load(Path.Combine(run, "merged.safetensors"), options: PrunedModels.LoadOptions);
        using (merged.Model)
        {
            var state = PruningState.Of(merged.Model);
            Assert.Equal(2, state.Merged.Count);
            Assert.Empty(state.Pruned);
            Assert.All(state.Merged, i => Assert.Contains($"features.{i + 1}.conv.weight", merged.Model.state_dict().Keys));
        }
    }

    [Fact]
    public void DroppingABlockThatChangesShapeIsAClearError()
    {
        using var dir = new TempDir();
        var baseline = MobileNetBaseline(dir);
        var (code, _, err) = Run(["finetune", "--checkpoint", baseline, "--pruned", "2,3", "--method", "drop", "--epochs", "1", "--out", dir.File("drop"), .. Quick]);
        Assert.Equal(2, code);
        Assert.Contains("block 3 (features.4) cannot be dropped", err.Replace("\n", "", StringComparison.Ordinal));
        (code, _, err) = Run(["prune", "--checkpoint", baseline, "--blocks", "2", "--method", "drop", "--candidates", "1,2,4", "--out", dir.File("p"), .. Quick]);
        Assert.Equal(2, code);
        Assert.Contains("block 1 (features.2) cannot be dropped", err.Replace("\n", "", StringComparison.Ordinal));
        Assert.False(Directory.Exists(dir.File("p")));
        // By default drop's candidates are the 10 blocks that keep their shape.
        (code, _, err) = Run(["prune", "--checkpoint", baseline, "--blocks", "11", "--method", "drop", "--out", dir.File("p"), .. Quick]);
        Assert.Equal(2, code);
        Assert.Contains("expected 1–10", err.Replace("\n", "", StringComparison.Ordinal));
    }
}
