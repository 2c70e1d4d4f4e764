using System.Text.Json;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Tests.Cli;

/// <summary><c>updp prune</c> and the single-model verbs on a ResNet, on a slice of Fashion-MNIST.</summary>
public partial class CliTests
{
    /// <summary>
    /// An untrained resnet18 baseline with its sidecar. It keeps torchvision's stem (8×8 maps in
    /// layer1 at 32²) so that evaluating the test set twice stays quick; the small-input stem has 15× the MACs.
    /// </summary>
    private static string ResNetBaseline(TempDir dir)
    {
        var path = dir.File("resnet/model.safetensors");
        manual_seed(1);
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("resnet18") with { StemStride = 4 });
        Checkpoint.Save(model, path, new ValidationSplit(200, 5).AddTo(new CheckpointMeta
        {
            Classes = DatasetCatalog.FashionMnistClassNames,
            Preprocessing = new Preprocessing(28, 32, Normalization.FashionMnist.Mean, Normalization.FashionMnist.Std),
        }));
        return path;
    }

    [Fact]
    public void PruneMergesAResNetsProjectionAndIdentityBlocksEndToEnd()
    {
        using var dir = new TempDir();
        var baseline = ResNetBaseline(dir);
        var run = dir.File("prune");
        // layer2.0 (stride 2, projection → a 7×7 stride-2 conv) and layer2.1 (identity → 5×5).
        var (code, stdout, err) = Run(["prune", "--checkpoint", baseline, "--blocks", "2", "--candidates", "2,3", "--method", "updp", "--out", run,
            "--supernet-epochs", "1", "--finetune-epochs", "1", "--ramp", "0.5", "--search-val-limit", "100", "--latency-runs", "2", .. Quick]);
        Assert.True(code == 0, err);
        Assert.Contains("merge", stdout);

        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))))
        {
            var m = metrics.RootElement;
            Assert.Equal("updp", m.GetProperty("method").GetString());
            Assert.Equal([2, 3], m.GetProperty("blocks").EnumerateArray().Select(b => b.GetInt32()));
            Assert.InRange(m.GetProperty("top1").GetDouble(), 0, 1);
            Assert.InRange(m.GetProperty("merge_max_abs_diff").GetDouble(), 0, m.GetProperty("merge_tolerance").GetDouble());
            // The merged 7×7 and 5×5 convs have more parameters and MACs than the pairs of 3×3s they replace.
            Assert.True(m.GetProperty("params").GetInt64() > m.GetProperty("baseline_params").GetInt64());
            Assert.True(m.GetProperty("macs").GetInt64() > m.GetProperty("baseline_macs").GetInt64());
            // model.onnx of the merged model, checked in ONNX Runtime, and both engines timed.
            Assert.True(File.Exists(Path.Combine(run, "model.onnx")));
            Assert.False(m.TryGetProperty("onnx_skipped", out _));
            Assert.InRange(m.GetProperty("onnx_relative_diff").GetDouble(), 0, 1e-4);
            Assert.True(m.GetProperty("onnx_latency_ms_b1").GetDouble() > 0);
        }

        var merged = Path.Combine(run, "merged.safetensors");
        var loaded = Checkpoint.Load(merged, options: PrunedModels.LoadOptions);
        using (var model = loaded.Model)
        {
            Assert.Equal([2, 3], PruningState.Of(model).Merged);
            Assert.Equal([128L, 64, 7, 7], model.state_dict()["layer2.0.conv.weight"].shape);
            Assert.Equal([128L, 128, 5, 5], model.state_dict()["layer2.1.conv.weight"].shape);
        }

        // The single-model verbs take the merged checkpoint as they take any other.
        (code, stdout, err) = Run("info", "--checkpoint", merged, "--input-size", "32");
        Assert.True(code == 0, err);
        Assert.Contains("layer2.0", stdout);
        (code, stdout, err) = Run("eval", "--checkpoint", merged, "--data", "fashion-mnist");
        Assert.True(code == 0, err);
        Assert.Contains("top-1", stdout);
    }

    [Fact]
    public void InfoAndBenchMeasureAMergedModelWithoutTrainingOne()
    {
        // resnet18 at 32² with torchvision's stem: layer2.0 (7×7 stride 2 once merged) and layer2.1 (5×5).
        string[] model = ["--model", "resnet18", "--input-size", "32", "--in-chans", "1", "--num-classes", "10", "--stem-stride", "4"];
        var (code, stdout, err) = Run(["info", .. model, "--json"]);
        Assert.True(code == 0, err);
        using var original = JsonDocument.Parse(stdout);
        (code, stdout, err) = Run(["info", .. model, "--merged", "2,3", "--json"]);
        Assert.True(code == 0, err);
        using var merged = JsonDocument.Parse(stdout);

        var (before, after) = (original.RootElement.GetProperty("blocks"), merged.RootElement.GetProperty("blocks"));
        // 8×8 → 4×4 maps in layer2: 7×7·64·128 and 5×5·128·128 per output pixel, with biases.
        Assert.Equal(16L * 128 * 64 * 49, after[2].GetProperty("macs").GetInt64());
        Assert.Equal(16L * 128 * 128 * 25, after[3].GetProperty("macs").GetInt64());
        Assert.Equal((128L * 64 * 49) + 128, after[2].GetProperty("params").GetInt64());
        Assert.Equal(before[4].GetProperty("macs").GetInt64(), after[4].GetProperty("macs").GetInt64());
        Assert.Equal(
            original.RootElement.GetProperty("macs").GetInt64() - before[2].GetProperty("macs").GetInt64() - before[3].GetProperty("macs").GetInt64()
                + after[2].GetProperty("macs").GetInt64() + after[3].GetProperty("macs").GetInt64(),
            merged.RootElement.GetProperty("macs").GetInt64());

        // The merged copy timed in turns with the original (random weights).
        (code, stdout, err) = Run("bench", "--model", "resnet18", "--resolution", "32", "--stem-stride", "4", "--batch", "2", "--runs", "3", "--warmup", "1",
            "--pruned", "2,3", "--json");
        Assert.True(code == 0, err);
        using var bench = JsonDocument.Parse(stdout);
        var rows = bench.RootElement.EnumerateArray().ToList();
        Assert.Equal(2, rows.Count);
        Assert.All(rows, r => Assert.True(r.GetProperty("median_ms").GetDouble() > 0));
        var mergedRow = Assert.Single(rows, r => r.GetProperty("variant").GetString() == "merged 2,3");
        Assert.True(mergedRow.GetProperty("speedup").GetDouble() > 0);
        Assert.True(mergedRow.GetProperty("macs").GetInt64() > rows[0].GetProperty("macs").GetInt64());

        // In ONNX Runtime too: both models exported in memory and checked against TorchSharp first.
        (code, stdout, err) = Run("bench", "--model", "resnet18", "--resolution", "32", "--stem-stride", "4", "--batch", "1", "--runs", "1", "--warmup", "0",
            "--pruned", "2,3", "--engine", "onnxruntime", "--json");
        Assert.True(code == 0, err);
        using var onnx = JsonDocument.Parse(stdout);
        Assert.Equal(["original", "merged 2,3"], onnx.RootElement.EnumerateArray().Select(r => r.GetProperty("variant").GetString()));
        Assert.All(onnx.RootElement.EnumerateArray(), r => Assert.True(r.GetProperty("median_ms").GetDouble() > 0));

        (code, _, err) = Run(["info", .. model, "--merged", "2,8"]);
        Assert.Equal(2, code);
        Assert.Contains("block 8 is out of range", err);
    }
}
