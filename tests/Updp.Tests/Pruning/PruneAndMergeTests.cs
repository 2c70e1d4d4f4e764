using Updp.Models;
using Updp.Pruning;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Pruning;

public class PruneAndMergeTests
{
    [Fact]
    public void MergesTheChosenBlocksAsPruneCalibrateAndMergeDo()
    {
        using var scope = NewDisposeScope();
        var calibration = new[] { Input(1, batch: 16), Input(2, batch: 16) };
        var x = Input(3);
        // By hand: λ = 1, the new batch norms calibrated on the batches, not merged.
        using var byHand = Atto(40);
        var pruned = new[] { 2, 7 }.Select(i =>
        {
            var p = byHand.Prune(i);
            p.Lambda = 1;
            return p;
        }).ToList();
        BatchNormCalibration.Recalibrate(byHand, calibration, pruned.SelectMany(p => p.BatchNorms));
        byHand.eval();
        var expected = byHand.call(x);
        using var model = Atto(40);
        model.eval();
        var before = ModelProfiler.CountParameters(model);

        var report = Merger.PruneAndMerge(model, [7, 2], calibration);

        Assert.Equal([2, 7], report.MergedBlocks);
        Assert.Equal(3, report.Batches); // the two given and one random
        Assert.All(model.Blocks, b => Assert.Equal(b.Index is 2 or 7 ? BlockForm.Merged : BlockForm.Original, model.FormOf(b.Index)));
        Assert.False(model.training);
        Assert.Equal(before, report.ParamsBefore);
        Assert.Equal(ModelProfiler.CountParameters(model), report.ParamsAfter);
        Assert.True(report.ParamsAfter < before);
        var actual = model.call(x);
        Assert.True(MaxAbsDiff(actual, expected) <= 1e-4 * Math.Max(1, MaxAbs(expected)), $"max |Δ| {MaxAbsDiff(actual, expected)}");
        // The statistics matter: without calibration the pruned blocks compute something else.
        using var uncalibrated = Atto(40);
        foreach (var i in new[] { 2, 7 })
        {
            uncalibrated.Prune(i).Lambda = 1;
        }
        uncalibrated.eval();
        Assert.True(MaxAbsDiff(uncalibrated.call(x), expected) > 1e-2);
    }

    [Theory]
    [InlineData(new int[0], "at least one block")]
    [InlineData(new[] { 3, 12 }, "out of range")]
    [InlineData(new[] { -1 }, "out of range")]
    [InlineData(new[] { 4, 4 }, "more than once")]
    [InlineData(new[] { 5 }, "is merged, not original")]
    [InlineData(new[] { 1 }, "λ = 0.5")]
    public void RefusesBadBlocksBeforeChangingAnything(int[] blocks, string message)
    {
        using var scope = NewDisposeScope();
        using var model = Atto(41);
        // Block 5 is already merged; block 6 is pruned with λ = 0.5 unless block 1 is what is asked for.
        Merger.PruneAndMerge(model, [5], [Input(1)]);
        model.Prune(6).Lambda = blocks.SequenceEqual([1]) ? 0.5 : 1;
        var forms = model.Blocks.Select(b => model.FormOf(b.Index)).ToList();

        var e = Assert.Throws<ArgumentException>(() => Merger.PruneAndMerge(model, blocks, [Input(2)]));

        Assert.Contains(message, e.Message);
        Assert.Equal(forms, model.Blocks.Select(b => model.FormOf(b.Index)));
    }
}
