using System.Text.Json;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Tests.Data;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Tests.Cli;

/// <summary><c>updp prune</c> and friends on DeiT, on a slice of Fashion-MNIST.</summary>
public partial class CliTests
{
    /// <summary>
    /// The first images of Fashion-MNIST as a data directory: the stages evaluate on the whole test
    /// split, and 10,000 images through deit_tiny would dominate the test's time.
    /// </summary>
    private static string FashionMnistSlice(TempDir dir, int train, int test)
    {
        var path = dir.File("fashion-slice");
        Directory.CreateDirectory(path);
        static void Write(string file, LabeledImages images)
        {
            static byte[] Header(params int[] values) => values.SelectMany(v => new[] { (byte)(v >> 24), (byte)(v >> 16), (byte)(v >> 8), (byte)v }).ToArray();
            File.WriteAllBytes(file + "-images-idx3-ubyte", [0, 0, 8, 3, .. Header(images.Count, images.Height, images.Width), .. images.Pixels]);
            File.WriteAllBytes(file + "-labels-idx1-ubyte", [0, 0, 8, 1, .. Header(images.Count), .. images.Labels]);
        }
        Write(Path.Combine(path, "train"), FashionMnistFiles.Train.Take(train));
        Write(Path.Combine(path, "t10k"), FashionMnistFiles.Test.Take(test));
        return path;
    }

    [Fact]
    public void PruneRunsEndToEndOnDeiT()
    {
        using var dir = new TempDir();
        var baseline = dir.File("baseline/model.safetensors");
        manual_seed(2);
        // Patch 8 (16 patch tokens) rather than the small-input patch 4 keeps the test ~4× cheaper.
        using (var model = ModelRegistry.Create(ModelConfig.SmallInput("deit_tiny_patch16_224") with { StemStride = 8 }))
        {
            Checkpoint.Save(model, baseline, new ValidationSplit(200, 5).AddTo(new CheckpointMeta
            {
                Classes = DatasetCatalog.FashionMnistClassNames,
                Preprocessing = new Preprocessing(28, 32, Normalization.FashionMnist.Mean, Normalization.FashionMnist.Std),
            }));
        }
        var data = FashionMnistSlice(dir, train: 1000, test: 100);
        var run = dir.File("prune");
        var (code, stdout, err) = Run("prune", "--checkpoint", baseline, "--data", data, "--blocks", "2", "--method", "updp", "--out", run,
            "--supernet-epochs", "1", "--finetune-epochs", "1", "--search-population", "3", "--search-generations", "1", "--search-val-limit", "50",
            "--latency-runs", "2", "--train-limit", "256", "--max-steps", "2", "--batch-size", "16", "--calibration-batches", "1");
        Assert.True(code == 0, err + stdout);

        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json")));
        var m = metrics.RootElement;
        var blocks = m.GetProperty("blocks").EnumerateArray().Select(b => b.GetInt32()).ToList();
        Assert.Equal(2, blocks.Distinct().Count());
        Assert.InRange(m.GetProperty("top1").GetDouble(), 0, 1);
        Assert.InRange(m.GetProperty("merge_max_abs_diff").GetDouble(), 0, m.GetProperty("merge_tolerance").GetDouble());
        // Each merged block saves fc1 and fc2 (8·N·D² MACs) but gains one D×D Linear (N·D²): 7·17·192² MACs.
        Assert.Equal(m.GetProperty("baseline_macs").GetInt64() - (2L * 7 * 17 * 192 * 192), m.GetProperty("macs").GetInt64());
        Assert.Equal(m.GetProperty("baseline_params").GetInt64() - (2L * ((7 * 192 * 192) + (6 * 192))), m.GetProperty("params").GetInt64());
        // model.onnx of the merged model, checked in ONNX Runtime, and both engines timed.
        Assert.True(File.Exists(Path.Combine(run, "model.onnx")));
        Assert.False(m.TryGetProperty("onnx_skipped", out _));
        Assert.InRange(m.GetProperty("onnx_relative_diff").GetDouble(), 0, 1e-4);
        Assert.True(m.GetProperty("onnx_latency_ms_b1").GetDouble() > 0);

        var merged = Checkpoint.Load(Path.Combine(run, "merged.safetensors"), options: PrunedModels.LoadOptions);
        using (merged.Model)
        {
            Assert.Equal(blocks, PruningState.FromMeta(merged.Meta)!.Merged.Order());
            Assert.All(blocks, b => Assert.Equal(BlockForm.Merged, merged.Model.FormOf(b)));
        }
    }
}
