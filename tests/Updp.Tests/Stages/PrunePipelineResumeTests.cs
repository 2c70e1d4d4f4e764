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

    // A whole run in a few seconds: K=1 of K_max=2, two subsets scored, one step per training stage.
    private PruneOptions Tiny(string baseline, string outDir) => new()
    {
        Checkpoint = baseline,
        Settings = new StageSettings { Data = "fashion-mnist", TrainLimit = 256, CalibrationBatches = 1, CalibrationBatchSize = 32, EvalBatchSize = 500 },
        OutDir = _dir.File(outDir),
        Blocks = 1,
        Supernet = Quick with { MaxStepsPerEpoch = 1 },
        Finetune = Quick with { MaxStepsPerEpoch = 1 },
        Search = new SearchStrategy { Population = 2, Generations = 0, Seed = 3 },
        SearchValidationLimit = 50,
        MaxPruned = 2,
        MergeCheckImages = 8,
        LatencyRuns = 1,
        LatencyWarmup = 0,
    };

    [Fact]
    public void APruneRunIsReusedOnlyWithItsOwnSettingsAndOnlyByOneProcess()
    {
        var baseline = Baseline();
        var options = Tiny(baseline, "run");
        PrunePipeline.Run(options);
        var record = _dir.File("run/run.json");
        Assert.Contains("\"finetune_lr\": \"0.001\"", File.ReadAllText(record));
        var written = Directory.EnumerateFiles(options.OutDir, "*", SearchOption.AllDirectories).ToDictionary(f => f, File.GetLastWriteTimeUtc);

        // Finished: refused without --resume, reported again with it.
        var finished = Assert.Throws<ArgumentException>(() => PrunePipeline.Run(options));
        Assert.Contains("holds a finished prune run", finished.Message);
        var again = PrunePipeline.Run(options with { Resume = true });
        Assert.Equal(Enum.GetValues<PruneStage>(), again.Skipped);
        Assert.All(written, f => Assert.Equal(f.Value, File.GetLastWriteTimeUtc(f.Key)));

        // Other settings are refused, finished or interrupted, naming each difference and nothing else.
        var lr = Assert.Throws<RunSettingsMismatchException>(() => PrunePipeline.Run(options with { Resume = true, Finetune = options.Finetune with { LearningRate = 2e-3 } }));
        Assert.Equal(["finetune_lr: 0.001 → 0.002"], lr.Differences);
        Assert.Contains("finetune_lr: 0.001 → 0.002", lr.Message);
        File.Delete(_dir.File("run/metrics.json"));
        var interrupted = Assert.Throws<RunSettingsMismatchException>(() => PrunePipeline.Run(options with { Method = FinetuneMethod.Direct, Ramp = 0.25 }));
        Assert.Equal(["method: updp → direct", "ramp: 0.5 → 0.25"], interrupted.Differences);
        // The same weights under the same name are not the same baseline: its content is part of the run.
        var (weights, sidecar) = (File.ReadAllBytes(baseline), File.ReadAllBytes(Checkpoint.SidecarPath(baseline)));
        var loaded = Checkpoint.Load(baseline);
        using (var model = loaded.Model)
        {
            using var _ = no_grad();
            model.parameters().First().add_(1);
            Checkpoint.Save(model, baseline, loaded.Meta);
        }
        var content = Assert.Throws<RunSettingsMismatchException>(() => PrunePipeline.Run(options));
        Assert.Equal("checkpoint", Assert.Single(content.Differences).Split(':')[0]);
        File.WriteAllBytes(baseline, weights);
        File.WriteAllBytes(Checkpoint.SidecarPath(baseline), sidecar);

        // A second user of the directory is refused, naming the holder.
        using (RunLock.Acquire(options.OutDir, "updp prune"))
        {
            var inUse = Assert.Throws<RunInUseException>(() => PrunePipeline.Run(options));
            Assert.Contains($"in use by pid {Environment.ProcessId} (updp prune)", inUse.Message);
        }
        Assert.False(File.Exists(_dir.File("run/metrics.json")));

        // The interrupted run with its own settings continues where it stopped.
        var resumed = PrunePipeline.Run(options);
        Assert.Equal([PruneStage.Supernet, PruneStage.Search, PruneStage.Finetune, PruneStage.Merge], resumed.Skipped);

        // --force starts over with the new settings, which the run then records.
        var forced = PrunePipeline.Run(options with { Force = true, Finetune = options.Finetune with { LearningRate = 2e-3 } });
        Assert.Empty(forced.Skipped);
        Assert.Contains("\"finetune_lr\": \"0.002\"", File.ReadAllText(record));
        Assert.False(File.Exists(_dir.File("run/.lock.pid")));
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

        var mismatch = Assert.Throws<RunSettingsMismatchException>(() => PrunePipeline.Run(options with { Blocks = 2 }));
        Assert.Equal(["blocks: 1 → 2"], mismatch.Differences);
        // A run directory that recorded no settings (an older version's) is continued only when asked to,
        // and then each skipped stage's result is still checked against the run.
        File.Delete(_dir.File("run/run.json"));
        var e = Assert.Throws<ArgumentException>(() => PrunePipeline.Run(options with { Blocks = 2 }));
        Assert.Contains("recorded no settings; give --resume", e.Message);
        e = Assert.Throws<ArgumentException>(() => PrunePipeline.Run(options with { Blocks = 2, Resume = true }));
        Assert.Contains("ranks subsets of 1 blocks, not 2", e.Message);
        Assert.False(File.Exists(_dir.File("run/run.json")));
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
