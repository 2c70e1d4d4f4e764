using System.Text.Json;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Tests.Stages;

/// <summary>Supernet → search → fine-tune on a slice of Fashion-MNIST, a few steps each.</summary>
public class StagePipelineTests : IDisposable
{
    private const int TrainImages = 256;
    private const int ValidationImages = 200;

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static TrainOptions Quick(int epochs, int steps) =>
        new() { Epochs = epochs, BatchSize = 32, MaxStepsPerEpoch = steps, WarmupEpochs = 0, LearningRate = 1e-3, Seed = 3 };

    /// <summary>A baseline as <c>updp train</c> leaves it: an (untrained) convnext_atto with its sidecar.</summary>
    private string Baseline()
    {
        var path = _dir.File("baseline/model.safetensors");
        manual_seed(1);
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto") with { StemStride = 4, LayerScaleInit = 0.1 });
        Checkpoint.Save(model, path, new ValidationSplit(ValidationImages, 5).AddTo(new CheckpointMeta
        {
            Classes = DatasetCatalog.FashionMnistClassNames,
            Preprocessing = new Preprocessing(28, 32, Normalization.FashionMnist.Mean, Normalization.FashionMnist.Std),
        }));
        return path;
    }

    [Fact]
    public void SupernetSearchAndFinetuneProduceAMergeablePrunedModel()
    {
        var baseline = Baseline();
        var settings = new StageSettings
        {
            Data = "fashion-mnist",
            CalibrationBatches = 2,
            CalibrationBatchSize = 32,
            TrainLimit = TrainImages,
            EvalBatchSize = 100,
        };

        // Stage 1: every block pruned, subsets of up to 3 sampled per step, distilled from the baseline.
        var supernet = SupernetTraining.Run(new SupernetOptions
        {
            Checkpoint = baseline,
            Settings = settings,
            OutDir = _dir.File("supernet"),
            MaxPruned = 3,
            Train = Quick(epochs: 1, steps: 3),
            Distillation = new DistillationOptions { Teacher = baseline },
        });

        Assert.Equal(Enumerable.Range(0, 12), supernet.Blocks);
        Assert.Equal(12, supernet.CalibratedNorms);
        Assert.Equal(new ValidationSplit(ValidationImages, 5), supernet.Split);
        Assert.True(File.Exists(_dir.File("supernet/metrics.json")));
        var loaded = Checkpoint.Load(supernet.Checkpoint, options: PrunedModels.LoadOptions);
        using (loaded.Model)
        {
            Assert.All(loaded.Model.PrunedBlocks(), p => Assert.Equal(0, p.Progressive.Lambda));
            Assert.Equal(12, loaded.Model.PrunedBlocks().Count());
            Assert.Equal(new ValidationSplit(ValidationImages, 5), ValidationSplit.FromMeta(loaded.Meta));
        }

        // Stage 2: K = 2 of 12 by evolution (66 subsets > 3·(2+1)), never block 0.
        var search = SubnetSearch.Run(new SearchOptions
        {
            Checkpoint = supernet.Checkpoint,
            Settings = settings,
            Blocks = 2,
            OutDir = _dir.File("search"),
            Feasible = s => !s.Contains(0),
            Strategy = new SearchStrategy { Population = 3, Generations = 2, Seed = 1 },
            ValidationLimit = 100,
        });

        Assert.Equal("evolutionary", search.Method);
        Assert.Equal(66, search.Subsets);
        Assert.InRange(search.Scored, 3, 9);
        Assert.Equal(100, search.ValidationImages);
        Assert.All(search.Candidates, c =>
        {
            Assert.Equal(2, c.Blocks.Count);
            Assert.DoesNotContain(0, c.Blocks);
            Assert.InRange(c.ValTop1, 0, 1);
            Assert.True(c.Macs < search.Original.Macs);
        });
        Assert.Equal(search.Candidates.Select(c => c.ValTop1).OrderDescending(), search.Candidates.Select(c => c.ValTop1));
        using (var json = JsonDocument.Parse(File.ReadAllText(_dir.File("search/search.json"))))
        {
            var root = json.RootElement;
            Assert.Equal("evolutionary", root.GetProperty("method").GetString());
            Assert.Equal(1, root.GetProperty("strategy").GetProperty("seed").GetInt32());
            Assert.Equal(search.Scored, root.GetProperty("candidates").GetArrayLength());
            var top = root.GetProperty("candidates")[0];
            Assert.Equal(search.Candidates[0].Blocks, top.GetProperty("blocks").EnumerateArray().Select(b => b.GetInt32()));
            Assert.Equal(search.Candidates[0].Macs, top.GetProperty("macs").GetInt64());
        }
        var chosen = search.Candidates[0].Blocks;

        // Stage 3: UPDP fine-tuning of the chosen subset; λ ramps over 3 of 4 steps, so only the
        // second epoch ends with λ=1 and may be saved.
        var finetune = ProgressiveFinetune.Run(new FinetuneOptions
        {
            Checkpoint = supernet.Checkpoint,
            Settings = settings with { EvalBatchSize = 500 },
            OutDir = _dir.File("updp"),
            Blocks = chosen,
            Train = Quick(epochs: 2, steps: 2),
            Ramp = 0.75,
            Distillation = new DistillationOptions { Teacher = baseline, Alpha = 0.3, Temperature = 2 },
        });

        Assert.Equal("updp", finetune.Method);
        Assert.Equal("supernet", finetune.Init);
        Assert.Equal(chosen, finetune.Blocks);
        Assert.Equal(2, finetune.BestEpoch);
        Assert.Equal(search.Candidates[0].Params, finetune.Params);
        Assert.Equal(search.Candidates[0].Macs, finetune.Macs);
        Assert.Equal(search.Original, finetune.Original);
        Assert.InRange(finetune.Top1, 0, 1);
        using (var json = JsonDocument.Parse(File.ReadAllText(_dir.File("updp/metrics.json"))))
        {
            Assert.Equal(finetune.Top1, json.RootElement.GetProperty("top1").GetDouble());
            Assert.Equal("updp", json.RootElement.GetProperty("method").GetString());
        }
        var pruned = Checkpoint.Load(finetune.Checkpoint, options: PrunedModels.LoadOptions);
        using (var model = pruned.Model)
        {
            Assert.All(model.Blocks, b => Assert.Equal(chosen.Contains(b.Index) ? BlockForm.Pruned : BlockForm.Original, model.FormOf(b.Index)));
            Assert.All(model.PrunedBlocks(), p => Assert.Equal(1, p.Progressive.Lambda));
            using var scope = NewDisposeScope();
            var images = TrainingRun.EvalLoader(FashionMnistTestSlice(), pruned.Meta!.Preprocessing!, 32).Epoch(0).Select(b => b.Images).ToList();
            var report = Merger.MergeAll(model, images);
            Assert.Equal(chosen, report.MergedBlocks);
        }

        // The drop baseline on the same subset, from the same supernet.
        var drop = ProgressiveFinetune.Run(new FinetuneOptions
        {
            Checkpoint = supernet.Checkpoint,
            Settings = new StageSettings { Data = "fashion-mnist", TrainLimit = TrainImages, EvalBatchSize = 500 },
            OutDir = _dir.File("drop"),
            Blocks = chosen,
            Method = FinetuneMethod.Drop,
            Train = Quick(epochs: 1, steps: 2),
        });
        Assert.Equal(0, drop.Ramp);
        Assert.True(drop.Params < finetune.Params);
        var dropped = Checkpoint.Load(drop.Checkpoint, options: PrunedModels.LoadOptions);
        using (dropped.Model)
        {
            Assert.All(chosen, i => Assert.Equal(BlockForm.Dropped, dropped.Model.FormOf(i)));
        }
    }

    private static LabeledImages FashionMnistTestSlice() => Data.FashionMnistFiles.Test.Take(64);
}
