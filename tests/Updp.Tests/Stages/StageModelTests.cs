using TorchSharp;
using TorchSharp.Modules;
using Updp.Models;
using Updp.Models.ConvNeXt;
using Updp.Pruning;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Stages;

/// <summary>What the stages do to a model's blocks, on small random inputs.</summary>
public class StageModelTests
{
    private static readonly int[] AllBlocks = [.. Enumerable.Range(0, 12)];

    private static List<Tensor> Batches(int seed, int count, int batch = 6) =>
        [.. Enumerable.Range(0, count).Select(i => Input(seed + i, batch))];

    [Fact]
    public void UnpruneRestoresTheOriginalBlockWithItsTrainedWeights()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(1);
        model.eval();
        var x = Input(1);
        var before = model.call(x);
        var keys = model.state_dict().Keys.ToList();
        var original = model.Blocks[5].Module;

        var pruned = (ProgressiveConvNeXtBlock)model.Prune(5);
        pruned.Lambda = 0.7;
        using (no_grad())
        {
            pruned.Gamma.mul_(2);
        }
        var unpruned = model.Unprune(5);

        Assert.Same(original, unpruned);
        Assert.Equal(BlockForm.Original, model.FormOf(5));
        Assert.Equal(keys, model.state_dict().Keys);
        // The weight changed in the pruned form is the original's: the output moves.
        Assert.True(MaxAbsDiff(before, model.call(x)) > 1e-3);
        using (no_grad())
        {
            ((ConvNeXtBlock)unpruned).Gamma.div_(2);
        }
        Assert.True(Checkpoints.TestSupport.Identical(before, model.call(x)));
        Assert.Same(original, model.Unprune(5));
    }

    [Fact]
    public void MergedOrDroppedBlocksCannotBeUnpruned()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(2);
        Prune(model, [3], 1, seed: 2);
        Merger.MergeAll(model, [Input(2)]);
        model.Drop(4);
        Assert.Throws<InvalidOperationException>(() => model.Unprune(3));
        Assert.Throws<InvalidOperationException>(() => model.Unprune(4));
    }

    [Fact]
    public void SupernetPreparationCalibratesEachNewNormOnTheOriginalNetworksFeatures()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(3);
        var images = Batches(3, 2);
        // The features each block's LayerNorm sees in the original network: conv_dw's output.
        var dwOutputs = AllBlocks.ToDictionary(i => i, _ => new List<Tensor>());
        var hooks = model.Blocks.Select(b => ((ConvNeXtBlock)b.Module).ConvDw.register_forward_hook((_, _, y) =>
        {
            dwOutputs[b.Index].Add(y.detach().clone());
            return y;
        })).ToList();
        model.eval();
        using (no_grad())
        {
            images.ForEach(x => model.call(x));
        }
        hooks.ForEach(h => h.remove());

        var calibrated = SupernetTraining.Prepare(model, AllBlocks, images);

        Assert.Equal(12, calibrated);
        foreach (var (index, outputs) in dwOutputs)
        {
            var block = (ProgressiveConvNeXtBlock)model.Blocks[index].Module;
            Assert.Equal(0, block.Lambda);
            var mean = stack(outputs.Select(y => y.mean([0, 2, 3])).ToList()).mean([0]);
            var variance = stack(outputs.Select(y => y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]).var(0)).ToList()).mean([0]);
            Assert.True(MaxAbsDiff(mean, block.BatchNorm.running_mean!) < 1e-4 * Math.Max(1, MaxAbs(mean)), $"block {index} mean");
            Assert.True(MaxAbsDiff(variance, block.BatchNorm.running_var!) < 1e-4 * Math.Max(1, MaxAbs(variance)), $"block {index} variance");
        }
    }

    [Fact]
    public void ScoringRecalibratesTheNormsOfTheSubsetOnTheCalibrationBatches()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(4);
        Prune(model, AllBlocks, 0, seed: 4);
        var calibration = Batches(40, 2);
        var g = new Generator(41);
        var validation = Enumerable.Range(0, 2).Select(_ => (randn([8, 1, 32, 32], generator: g), randint(0, 10, [8], generator: g))).ToList();
        var bn3 = ((ProgressiveConvNeXtBlock)model.Blocks[3].Module).BatchNorm;
        var bn9 = ((ProgressiveConvNeXtBlock)model.Blocks[9].Module).BatchNorm;
        var mean3 = bn3.running_mean!.clone();
        var mean9 = bn9.running_mean!.clone();

        var first = SubnetSearch.ScoreSubset(model, AllBlocks, [3, 7], calibration, validation);

        Assert.InRange(first, 0, 1);
        Assert.False(MaxAbsDiff(mean3, bn3.running_mean!) < 1e-3, "block 3's statistics did not change");
        Assert.True(Checkpoints.TestSupport.Identical(mean9, bn9.running_mean!), "block 9 is not in the subset");
        // Block 3 is the first pruned block, so its input does not depend on any batch norm's mode:
        // its statistics are the calibration batches' own, averaged.
        var inputs = new List<Tensor>();
        var hook = bn3.register_forward_hook((_, x, y) =>
        {
            inputs.Add(x.detach().clone());
            return y;
        });
        model.eval();
        using (no_grad())
        {
            calibration.ForEach(x => model.call(x));
        }
        hook.remove();
        var expectedMean = stack(inputs.Select(x => x.mean([0])).ToList()).mean([0]);
        var expectedVar = stack(inputs.Select(x => x.var(0)).ToList()).mean([0]);
        Assert.True(MaxAbsDiff(expectedMean, bn3.running_mean!) < 1e-5 * Math.Max(1, MaxAbs(expectedMean)));
        Assert.True(MaxAbsDiff(expectedVar, bn3.running_var!) < 1e-5 * Math.Max(1, MaxAbs(expectedVar)));
        Assert.All(AllBlocks, i => Assert.Equal(i is 3 or 7 ? 1 : 0, ((IProgressiveBlock)model.Blocks[i].Module).Lambda));

        // A score depends on the subset alone, not on what was scored before.
        SubnetSearch.ScoreSubset(model, AllBlocks, [3, 9], calibration, validation);
        var again = SubnetSearch.ScoreSubset(model, AllBlocks, [3, 7], calibration, validation);
        Assert.Equal(first, again);
    }

    [Theory]
    [InlineData(FinetuneMethod.Updp, 0.0)]
    [InlineData(FinetuneMethod.Direct, 1.0)]
    public void FinetunePrunesTheSubsetAndRestoresEveryOtherBlock(FinetuneMethod method, double lambda)
    {
        using var scope = NewDisposeScope();
        using var model = Atto(5);
        var originalKeys = model.state_dict().Keys.ToList();
        Prune(model, AllBlocks, 0.3, seed: 5);

        var pruned = ProgressiveFinetune.Prepare(model, [8, 2], method);

        Assert.Equal(2, pruned.Count);
        Assert.All(pruned, p => Assert.Equal(lambda, p.Lambda));
        Assert.All(AllBlocks, i => Assert.Equal(i is 2 or 8 ? BlockForm.Pruned : BlockForm.Original, model.FormOf(i)));
        var added = model.state_dict().Keys.Except(originalKeys).ToList();
        Assert.All(added, k => Assert.Matches(@"^stages\.(1\.blocks\.0|2\.blocks\.4)\.bn\.", k));
        Assert.Equal(originalKeys.Order(), model.state_dict().Keys.Except(added).Order());
    }

    [Fact]
    public void DropRemovesTheBlocksAndTheirParameters()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(6);
        var profile = ModelFullProfile(model);
        Prune(model, AllBlocks, 0, seed: 6);

        var pruned = ProgressiveFinetune.Prepare(model, [1, 10], FinetuneMethod.Drop);

        Assert.Empty(pruned);
        Assert.Equal(BlockForm.Dropped, model.FormOf(1));
        Assert.Equal(BlockForm.Dropped, model.FormOf(10));
        Assert.Empty(model.PrunedBlocks());
        var names = model.named_parameters().Select(p => p.name).ToList();
        Assert.DoesNotContain(names, n => n.StartsWith("stages.0.blocks.1.", StringComparison.Ordinal));
        Assert.DoesNotContain(names, n => n.StartsWith("stages.3.blocks.0.", StringComparison.Ordinal));
        Assert.Equal(profile.Params - profile.Blocks[1].Params - profile.Blocks[10].Params, ModelProfiler.CountParameters(model));
        var x = Input(6);
        Assert.Equal([4L, 10], model.call(x).shape);
    }

    [Fact]
    public void MergedCostsMatchARealMerge()
    {
        using var scope = NewDisposeScope();
        var config = ModelConfig.SmallInput("convnext_atto");
        var costs = MergedCosts.Measure(config, 32, AllBlocks);
        using var model = Atto(7);
        var original = ModelFullProfile(model);
        Assert.Equal(new ModelCost(original.Params, original.Macs), costs.Original);

        int[] subset = [0, 4, 11];
        Prune(model, subset, 1, seed: 7);
        Merger.MergeAll(model, [Input(7)]);
        var merged = ModelFullProfile(model);

        Assert.Equal(new ModelCost(merged.Params, merged.Macs), costs.Of(subset));
        Assert.True(costs.Of(subset).Macs < costs.Original.Macs);
        Assert.Throws<ArgumentException>(() => MergedCosts.Measure(config, 32, [1]).Of([2]));
    }

    [Fact]
    public void DistillationLossMixesCrossEntropyAndTemperedKl()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(8);
        var student = randn([6, 10], generator: g).requires_grad_();
        var teacher = randn([6, 10], generator: g).requires_grad_();
        var labels = randint(0, 10, [6], generator: g);
        var ce = nn.functional.cross_entropy(student, labels);

        Assert.Equal(ce.item<float>(), Distillation.Loss(student, teacher, labels, 0, 4).item<float>());
        // Against the same logits the KL term vanishes.
        Assert.Equal(0.5 * ce.item<float>(), Distillation.Loss(student, student.detach(), labels, 0.5, 2).item<float>(), 5);
        // α = 1, T = 2: T²·Σ p_t (log p_t − log p_s), averaged over the batch, from the definition.
        var pt = (teacher / 2).exp() / (teacher / 2).exp().sum(1, keepdim: true);
        var ps = (student / 2).exp() / (student / 2).exp().sum(1, keepdim: true);
        var kl = (pt * (pt.log() - ps.log())).sum(1).mean() * 4;
        var loss = Distillation.Loss(student, teacher, labels, 1, 2);
        Assert.Equal((double)kl.item<float>(), loss.item<float>(), 5);

        loss.backward();
        Assert.NotNull(student.grad);
        Assert.True(teacher.grad is null || teacher.grad.abs().max().item<float>() == 0, "no gradient reaches the teacher");
        Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.Loss(student, teacher, labels, 1.5, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Distillation.Loss(student, teacher, labels, 0.5, 0));
    }

    private static ModelProfile ModelFullProfile(ImageClassifier model) => ModelProfiler.Profile(model, 32);
}
