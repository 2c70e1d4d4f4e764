using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Tests.Stages;

/// <summary>
/// <see cref="PrunePipeline"/> stopped after each stage and run again: the finished stages are
/// skipped (their typed results read back from the run directory) and the result is the one of the
/// uninterrupted run, to the last bit of the merged model.
/// </summary>
public class PrunePipelineResumeTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    // What each stage leaves in the run directory; a run stopped after stage s holds the files of s and the stages before it.
    private static readonly (PruneStage Stage, string[] Files)[] Outputs =
    [
        (PruneStage.Supernet, ["supernet"]),
        (PruneStage.Search, ["search.json"]),
        (PruneStage.Finetune, ["finetune"]),
        (PruneStage.Merge, ["merged.safetensors", "merged.json"]),
        (PruneStage.Measure, ["model.onnx", "metrics.json", "report.md"]),
    ];

    private string Baseline()
    {
        var path = _dir.File("baseline/model.safetensors");
        manual_seed(1);
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto") with { StemStride = 4, LayerScaleInit = 0.1 });
        Checkpoint.Save(model, path, new ValidationSplit(200, 5).AddTo(new CheckpointMeta
        {
            Classes = DatasetCatalog.FashionMnistClassNames,
            Preprocessing = new Preprocessing(28, 32, Normalization.FashionMnist.Mean, Normalization.FashionMnist.Std),
        }));
        return path;
    }

    private static TrainOptions Quick => new() { Epochs = 1, BatchSize = 32, MaxStepsPerEpoch = 2, WarmupEpochs = 0, LearningRate = 1e-3, Seed = 3 };

    [Fact]
    public void ARunStoppedAfterAnyStageResumesToTheUninterruptedResult()
    {
        var baseline = Baseline();
        var options = new PruneOptions
        {
            Checkpoint = baseline,
            Settings = new StageSettings { Data = "fashion-mnist", TrainLimit = 256, CalibrationBatches = 1, CalibrationBatchSize = 32, EvalBatchSize = 500 },
            OutDir = _dir.File("full"),
            Blocks = 2,
            Supernet = Quick,
            Finetune = Quick with { Epochs = 2 },
            Search = new SearchStrategy { Population = 3, Generations = 1, Seed = 3 },
            SearchValidationLimit = 100,
            Distillation = new DistillationOptions { Teacher = baseline },
            MergeCheckImages = 64,
            LatencyRuns = 2,
            LatencyWarmup = 1,
        };
        var full = PrunePipeline.Run(options);
        Assert.Empty(full.Skipped);
        using var fullMerged = Checkpoint.Load(_dir.File("full/merged.safetensors"), options: PrunedModels.LoadOptions).Model;

        for (var stopped = 0; stopped < Outputs.Length - 1; stopped++)
        {
            var runDir = _dir.File($"stopped-after-{Outputs[stopped].Stage}");
            CopyDirectory(options.OutDir, runDir);
            foreach (var file in Outputs.Skip(stopped + 1).SelectMany(o => o.Files).Select(f => Path.Combine(runDir, f)))
            {
                if (Directory.Exists(file))
                {
                    Directory.Delete(file, recursive: true);
                }
                File.Delete(file);
            }

            var resumed = PrunePipeline.Run(options with { OutDir = runDir });

            Assert.Equal(Outputs.Take(stopped + 1).Select(o => o.Stage), resumed.Skipped);
            Assert.Equal(full.Metrics.Blocks, resumed.Metrics.Blocks);
            Assert.Equal(full.Metrics.SearchValTop1, resumed.Metrics.SearchValTop1);
            Assert.Equal(full.Metrics.Top1, resumed.Metrics.Top1);
            Assert.Equal(full.Metrics.BaselineTop1, resumed.Metrics.BaselineTop1);
            Assert.Equal(full.Metrics.MergeMaxAbsDiff, resumed.Metrics.MergeMaxAbsDiff);
            Assert.Equal((full.Metrics.Params, full.Metrics.Macs), (resumed.Metrics.Params, resumed.Metrics.Macs));
            using var merged = Checkpoint.Load(Path.Combine(runDir, "merged.safetensors"), options: PrunedModels.LoadOptions).Model;
            AssertSameWeights(fullMerged, merged, $"the merged model of the run stopped after {Outputs[stopped].Stage}");
        }
    }

    [Fact]
    public void AFinishedSearchForAnotherKIsRefusedNotReused()
    {
        var baseline = Baseline();
        var options = new PruneOptions
        {
            Checkpoint = baseline,
            Settings = new StageSettings { Data = "fashion-mnist", TrainLimit = 256, CalibrationBatches = 1, CalibrationBatchSize = 32, EvalBatchSize = 500 },
            OutDir = _dir.File("run"),
            Blocks = 1,
            Supernet = Quick,
            Finetune = Quick,
            Search = new SearchStrategy { Population = 2, Generations = 0, Seed = 3 },
            SearchValidationLimit = 50,
            MaxPruned = 2,
            MergeCheckImages = 8,
            LatencyRuns = 1,
            LatencyWarmup = 0,
        };
        PrunePipeline.Run(options);
        File.Delete(_dir.File("run/finetune/metrics.json"));

        var e = Assert.Throws<ArgumentException>(() => PrunePipeline.Run(options with { Blocks = 2 }));
        Assert.Contains("ranks subsets of 1 blocks, not 2", e.Message);
    }

    private static void AssertSameWeights(ImageClassifier expected, ImageClassifier actual, string what)
    {
        using var scope = NewDisposeScope();
        var a = expected.state_dict();
        var b = actual.state_dict();
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, tensor) in a)
        {
            Assert.True(tensor.shape.SequenceEqual(b[name].shape) && tensor.eq(b[name]).all().item<bool>(), $"{what}: tensor {name} differs from the uninterrupted run's");
        }
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }
}
