using Updp.Benchmarks;

namespace Updp.Tests.Benchmarks;

public class LatencyStatsTests
{
    [Fact]
    public void PercentilesInterpolateBetweenRanks()
    {
        double[] sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        Assert.Equal(6, LatencyStats.Percentile(sorted, 0.5));
        Assert.Equal(2, LatencyStats.Percentile(sorted, 0.1));
        Assert.Equal(10, LatencyStats.Percentile(sorted, 0.9));
        Assert.Equal(2.5, LatencyStats.Percentile([2, 3], 0.5));
    }

    [Fact]
    public void PairedMeasurementAlternatesTheTwoActionsAfterWarmingBothUp()
    {
        var calls = new List<char>();
        var (a, b) = LatencyStats.MeasurePair(() => calls.Add('a'), () => calls.Add('b'), batch: 8, warmup: 2, runs: 5);
        Assert.Equal(string.Concat(Enumerable.Repeat("ab", 7)), string.Concat(calls));
        Assert.Equal((5, 8), (a.Runs, a.Batch));
        Assert.Equal((5, 8), (b.Runs, b.Batch));
        Assert.True(a.P10Ms <= a.MedianMs && a.MedianMs <= a.P90Ms);
        Assert.Throws<ArgumentException>(() => LatencyStats.MeasurePair(() => { }, () => { }, 1, 0, 0));
    }
}
