using System.Diagnostics;

namespace Updp.Benchmarks;

/// <summary>Timings of repeated runs: median and the 10th/90th percentiles, in milliseconds.</summary>
public sealed record LatencyStats(double MedianMs, double P10Ms, double P90Ms, int Runs, int Batch)
{
    public double ImagesPerSecond => Batch * 1000.0 / MedianMs;

    /// <summary>Runs <paramref name="action"/> <paramref name="warmup"/> times untimed, then <paramref name="runs"/> times timed.</summary>
    public static LatencyStats Measure(Action action, int batch, int warmup, int runs)
    {
        if (runs < 1)
        {
            throw new ArgumentException($"runs must be ≥ 1, got {runs}", nameof(runs));
        }
        for (var i = 0; i < warmup; i++)
        {
            action();
        }
        var times = new double[runs];
        for (var i = 0; i < runs; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            times[i] = clock.Elapsed.TotalMilliseconds;
        }
        Array.Sort(times);
        return new LatencyStats(Percentile(times, 0.5), Percentile(times, 0.1), Percentile(times, 0.9), runs, batch);
    }

    /// <summary>
    /// Times two actions alternately (a, b, a, b, …) after warming both up, so that a change in the
    /// machine's load while measuring shifts both alike and their ratio stays fair on a shared machine.
    /// </summary>
    public static (LatencyStats A, LatencyStats B) MeasurePair(Action a, Action b, int batch, int warmup, int runs)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (runs < 1)
        {
            throw new ArgumentException($"runs must be ≥ 1, got {runs}", nameof(runs));
        }
        for (var i = 0; i < warmup; i++)
        {
            a();
            b();
        }
        var (timesA, timesB) = (new double[runs], new double[runs]);
        for (var i = 0; i < runs; i++)
        {
            timesA[i] = Time(a);
            timesB[i] = Time(b);
        }
        return (FromTimes(timesA, batch), FromTimes(timesB, batch));
    }

    private static double Time(Action action)
    {
        var clock = Stopwatch.StartNew();
        action();
        return clock.Elapsed.TotalMilliseconds;
    }

    private static LatencyStats FromTimes(double[] times, int batch)
    {
        Array.Sort(times);
        return new LatencyStats(Percentile(times, 0.5), Percentile(times, 0.1), Percentile(times, 0.9), times.Length, batch);
    }

    /// <summary>Linear interpolation between closest ranks of sorted values.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double q)
    {
        var pos = q * (sorted.Count - 1);
        var lo = (int)Math.Floor(pos);
        var hi = Math.Min(lo + 1, sorted.Count - 1);
        return sorted[lo] + ((sorted[hi] - sorted[lo]) * (pos - lo));
    }
}
