using Updp.Benchmarks;
using Updp.Pruning.Blocks;
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
    public void PairedSpeedupIsTheMedianOfTheRoundRatios()
    {
        // Rounds 2 and 4 hit a slow spell for both models; the ratio of the medians, 12 / 5 = 2.4, would overstate it.
        double[] reference = [10, 40, 10, 40, 12];
        double[] other = [5, 20, 5, 41, 4];

        var speedup = LatencyStats.PairedSpeedup(reference, other);

        // Ratios 2, 2, 2, 0.976, 3 → median 2.
        Assert.Equal(2, speedup, 12);
        Assert.Throws<ArgumentException>(() => LatencyStats.PairedSpeedup([1, 2], [1]));
    }

    [Fact]
    public void InterleavedTimesAreInRoundOrder()
    {
        var round = 0;
        // Only the second round sleeps; the margin is wide because the machine may be busy.
        LatencyStats.MeasureInterleaved([() => Thread.Sleep(round++ == 1 ? 300 : 0), () => { }], batch: 1, warmup: 0, runs: 3, out var times);

        Assert.True(times[0][1] >= 299 && times[0][0] < times[0][1] && times[0][2] < times[0][1], string.Join(", ", times[0]));
        Assert.Equal(3, times[1].Length);
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
