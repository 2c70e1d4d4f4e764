using TorchSharp;
using Updp.Data;
using Updp.Models;
using Updp.Models.ConvNeXt;
using Updp.Pruning;
using Updp.Pruning.Blocks;
using Updp.Tests.Data;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Pruning;

public class MergeTests
{
    public static TheoryData<int[]> Subsets => new()
    {
        new[] { 0 },               // first block of stage 0
        new[] { 1 },               // last block of stage 0
        new[] { 2, 3 },            // the whole of stage 1, consecutive
        new[] { 4 },               // first of stage 2
        new[] { 9 },               // last of stage 2
        new[] { 5, 6, 7 },         // consecutive, inside a stage
        new[] { 1, 2 },            // consecutive across a downsampling
        new[] { 11 },              // the last block of the model
        Enumerable.Range(0, 12).ToArray(),
    };

    [Theory]
    [MemberData(nameof(Subsets))]
    public void MergedModelComputesWhatThePrunedModelComputes(int[] blocks)
    {
        using var scope = NewDisposeScope();
        using var model = Atto(100 + blocks.Sum());
        Prune(model, blocks, 1, seed: blocks.Length);
        model.eval();
        var x = Input(1);
        var pruned = model.call(x);
        var paramsBefore = ModelProfiler.CountParameters(model);
        var modulesBefore = model.modules().Count();

        var report = Merger.MergeAll(model, [x, Input(2, batch: 3)], randomBatches: 2);

        Assert.Equal(blocks, report.MergedBlocks);
        Assert.Equal(4, report.Batches);
        Assert.All(blocks, i => Assert.Equal(BlockForm.Merged, model.FormOf(i)));
        Assert.Empty(model.PrunedBlocks());
        // An independent check of the report: the merged model against the output taken before.
        var merged = model.call(x);
        var tolerance = 1e-4 * Math.Max(1, MaxAbs(pruned));
        Assert.True(MaxAbsDiff(merged, pruned) <= tolerance, $"max diff {MaxAbsDiff(merged, pruned)} > {tolerance}");
        Assert.True(report.MaxAbsDiff <= report.Tolerance);
        Assert.True(report.MaxAbsDiff < 1e-5 * Math.Max(1, report.MaxAbsOutput), $"merge error {report.MaxAbsDiff} is larger than float rounding");
        // The check is meaningful only if the pruned blocks matter to the output.
        Assert.True(report.MaxAbsOutput > 0.1);
        Assert.Equal(paramsBefore, report.ParamsBefore);
        Assert.Equal(ModelProfiler.CountParameters(model), report.ParamsAfter);
        Assert.True(report.ParamsAfter < report.ParamsBefore);
        Assert.True(model.modules().Count() < modulesBefore);
    }

    [Fact]
    public void PruneRecalibrateAndMergeOnRealImages()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(20);
        var images = FashionMnistFiles.Test;
        var loader = new BatchLoader(images.Take(96),
            ImageTransform.ForEvaluation(Normalization.FashionMnist), new BatchLoaderOptions { BatchSize = 32 });
        var batches = loader.Epoch(0).Select(b => b.Images).ToList();
        foreach (var b in model.Blocks.Where(b => b.Index % 3 == 1))
        {
            model.Prune(b.Index).Lambda = 1;
        }

        var calibrated = BatchNormCalibration.Recalibrate(model, batches.Take(2));
        var report = Merger.MergeAll(model, batches.Skip(2), randomBatches: 1);

        Assert.Equal(4, calibrated);
        Assert.Equal([1, 4, 7, 10], report.MergedBlocks);
        Assert.Equal(2, report.Batches);
        Assert.True(report.MaxAbsDiff < 1e-5 * Math.Max(1, report.MaxAbsOutput), $"merge error {report.MaxAbsDiff}");
    }

    [Fact]
    public void MergedBlockMatchesThePrunedBlockOnItsOwn()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(3);
        Prune(model, [4], 1, seed: 3);
        model.eval();
        var pruned = (nn.Module<Tensor, Tensor>)model.Blocks[4].Module;
        var merged = BlockRules.For(pruned).Merge(pruned);
        merged.eval();
        foreach (var size in new[] { 4, 9 })
        {
            var x = randn(2, 160, size, size);
            var expected = pruned.call(x);
            Assert.True(MaxAbsDiff(merged.call(x), expected) < 1e-5 * Math.Max(1, MaxAbs(expected)), $"{size}×{size}: {MaxAbsDiff(merged.call(x), expected)}");
            // The block's own contribution is large, so the agreement is not just the residual.
            Assert.True(MaxAbsDiff(expected, x) > 0.1);
        }
        Assert.Equal(["conv_dw.weight", "conv_dw.bias", "pw.weight", "pw.bias"], merged.named_parameters().Select(p => p.name));
        Assert.Equal([160L, 1, 7, 7], merged.named_parameters().First().parameter.shape);
        Assert.Equal([160L, 160], merged.named_parameters().Single(p => p.name == "pw.weight").parameter.shape);
    }

    [Fact]
    public void MergingLowersParametersAndMacs()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(4);
        var before = ModelProfiler.Profile(model, 32);
        Prune(model, [0, 7], 1, seed: 4);
        Merger.MergeAll(model, [Input(4)]);

        var after = ModelProfiler.Profile(model, 32);

        Assert.True(after.Macs < before.Macs);
        Assert.True(after.Params < before.Params);
        // Block 0 on the 8×8×40 map: dw 7×7 plus one 40×40 matmul per position (was two 40×160).
        Assert.Equal(8L * 8 * 40 * 49 + 8L * 8 * 40 * 40, after.Blocks[0].Macs);
        Assert.Equal(before.Blocks[1].Macs, after.Blocks[1].Macs);
        Assert.Equal(before.Macs - after.Macs, (before.Blocks[0].Macs - after.Blocks[0].Macs) + (before.Blocks[7].Macs - after.Blocks[7].Macs));
        Assert.Equal(40L * 49 + 40 + 40 * 40 + 40, after.Blocks[0].Params);
    }

    [Fact]
    public void PrunedBlocksCostWhatTheOriginalsCostInTheProfile()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(5);
        var before = ModelProfiler.Profile(model, 32);
        Prune(model, [0, 10], 0.5, seed: 5);
        var after = ModelProfiler.Profile(model, 32);
        Assert.Equal(before.Macs, after.Macs);
        Assert.Equal(before.Blocks[10].Params + 2 * 320, after.Blocks[10].Params);
    }

    [Fact]
    public void AFaultyMergeIsAnErrorAndLeavesTheModelUnmerged()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(6);
        Prune(model, [3, 8], 1, seed: 6);
        model.train();
        var x = Input(6);
        model.eval();
        var before = model.call(x);
        model.train();
        var prunedModules = model.Blocks.Select(b => b.Module).ToList();

        // A plausible bug: the layer scale left out of the merged bias.
        nn.Module<Tensor, Tensor> Faulty(nn.Module block)
        {
            var merged = (MergedConvNeXtBlock)BlockRules.For(block).Merge(block);
            var p = (ProgressiveConvNeXtBlock)block;
            using var _ = no_grad();
            merged.Pw.bias!.div_(p.Gamma);
            return merged;
        }

        var e = Assert.Throws<MergeVerificationException>(() => Merger.MergeAll(model, [x], 1, 0, Faulty));

        Assert.True(e.MaxAbsDiff > e.Tolerance);
        Assert.Contains(e.MaxAbsDiff.ToString("G3", System.Globalization.CultureInfo.InvariantCulture), e.Message);
        Assert.Contains(e.Tolerance.ToString("G3", System.Globalization.CultureInfo.InvariantCulture), e.Message);
        Assert.Equal([3, 8], e.Blocks);
        Assert.Equal(prunedModules, model.Blocks.Select(b => b.Module));
        Assert.True(model.training);
        model.eval();
        Assert.True(Checkpoints.TestSupport.Identical(before, model.call(x)));
    }

    [Fact]
    public void ASmallCorruptionOfOneMergedWeightIsCaught()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(7);
        Prune(model, [9], 1, seed: 7);

        nn.Module<Tensor, Tensor> Tweaked(nn.Module block)
        {
            var merged = (MergedConvNeXtBlock)BlockRules.For(block).Merge(block);
            using var _ = no_grad();
            merged.ConvDw.Weight[5, 0, 3, 3] += 0.05f;
            return merged;
        }

        Assert.Throws<MergeVerificationException>(() => Merger.MergeAll(model, [Input(7)], 0, 0, Tweaked));
        Assert.Equal(BlockForm.Pruned, model.FormOf(9));
    }

    [Fact]
    public void PartlyPrunedBlocksCannotBeMerged()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(8);
        Prune(model, [2], 1, seed: 8);
        Prune(model, [6], 0.75, seed: 9);

        var e = Assert.Throws<InvalidOperationException>(() => Merger.MergeAll(model, [Input(8)]));

        Assert.Contains("block 6 (stages.2.blocks.2) has λ = 0.75", e.Message);
        Assert.Equal(BlockForm.Pruned, model.FormOf(2));
    }

    [Fact]
    public void MergeNeedsAnInput()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(9);
        Prune(model, [2], 1, seed: 9);
        Assert.Throws<ArgumentException>(() => Merger.MergeAll(model, []));
        Assert.Equal(BlockForm.Pruned, model.FormOf(2));
    }

    [Fact]
    public void MergingLeavesDroppedAndOriginalBlocksAlone()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(10);
        model.Drop(0);
        Prune(model, [5], 1, seed: 10);
        var report = Merger.MergeAll(model, [Input(10)]);
        Assert.Equal([5], report.MergedBlocks);
        Assert.Equal(
            [BlockForm.Dropped, BlockForm.Original, BlockForm.Merged],
            new[] { 0, 1, 5 }.Select(model.FormOf));
    }
}
