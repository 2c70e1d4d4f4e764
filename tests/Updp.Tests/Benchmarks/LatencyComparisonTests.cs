using Updp.Benchmarks;
using Updp.Pruning;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Benchmarks;

public class LatencyComparisonTests
{
    [Fact]
    public void InterleavedMeasurementTakesTurnsAndKeepsEachActionsTimes()
    {
        var calls = new List<char>();
        var stats = LatencyStats.MeasureInterleaved(
            [() => calls.Add('a'), () => { calls.Add('b'); Thread.Sleep(20); }], batch: 4, warmup: 1, runs: 3);

        Assert.Equal("abababab", new string([.. calls]));
        Assert.Equal(2, stats.Count);
        Assert.True(stats[1].MedianMs >= 19, $"the sleeping action's median is {stats[1].MedianMs} ms");
        Assert.True(stats[0].MedianMs < stats[1].MedianMs);
        Assert.All(stats, s => Assert.Equal(3, s.Runs));
        Assert.Equal(4 * 1000 / stats[1].MedianMs, stats[1].ImagesPerSecond, 9);
    }

    [Fact]
    public void MergedCopyComputesWhatTheModelDoesWithThoseBlocksPruned()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(seed: 8);
        model.eval();
        var x = Input(3);

        using var copy = LatencyComparison.MergedCopy(model, [1, 5, 10], 32);

        Assert.All(model.Blocks, b => Assert.Equal(BlockForm.Original, model.FormOf(b.Index)));
        Assert.Equal([1, 5, 10], PruningState.Of(copy).Merged);
        foreach (var i in new[] { 1, 5, 10 })
        {
            model.Prune(i).Lambda = 1;
        }
        using var _ = no_grad();
        var expected = model.call(x);
        var tolerance = 1e-4 * Math.Max(1, MaxAbs(expected));
        Assert.True(MaxAbsDiff(copy.call(x), expected) <= tolerance);
        Assert.True(MaxAbs(expected) > 0.5);
    }
}
