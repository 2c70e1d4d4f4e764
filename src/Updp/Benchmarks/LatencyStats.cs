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
    /// Times several actions in turns, one run of each per round (A, B, A, B, …) after
    /// <paramref name="warmup"/> untimed rounds: on a shared, noisy machine a slow spell then hits
    /// every action alike, so ratios of their medians are fairer than from back-to-back series.
    /// </summary>
    public static IReadOnlyList<LatencyStats> MeasureInterleaved(IReadOnlyList<Action> actions, int batch, int warmup, int runs) =>
        MeasureInterleaved(actions, batch, warmup, runs, out _);

    /// <param name="times">Per action, its run times in round order (round i of every action ran back to back).</param>
    public static IReadOnlyList<LatencyStats> MeasureInterleaved(IReadOnlyList<Action> actions, int batch, int warmup, int runs, out double[][] times)
    {
        ArgumentNullException.ThrowIfNull(actions);
        if (runs < 1)
        {
            throw new ArgumentException($"runs must be ≥ 1, got {runs}", nameof(runs));
        }
        for (var i = 0; i < warmup; i++)
        {
            foreach (var action in actions)
            {
                action();
            }
        }
        times = actions.Select(_ => new double[runs]).ToArray();
        for (var i = 0; i < runs; i++)
        {
            for (var a = 0; a < actions.Count; a++)
            {
                var clock = Stopwatch.StartNew();
                actions[a]();
                times[a][i] = clock.Elapsed.TotalMilliseconds;
            }
        }
        return times.Select(t =>
        {
            var sorted = t.Order().ToArray();
            return new LatencyStats(Percentile(sorted, 0.5), Percentile(sorted, 0.1), Percentile(sorted, 0.9), runs, batch);
        }).ToList();
    }

    /// <summary>Two actions timed in turns (<see cref="MeasureInterleaved(IReadOnlyList{Action}, int, int, int)"/>).</summary>
    public static (LatencyStats A, LatencyStats B) MeasurePair(Action a, Action b, int batch, int warmup, int runs)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var stats = MeasureInterleaved([a, b], batch, warmup, runs);
        return (stats[0], stats[1]);
    }

    /// <summary>
    /// The median over rounds of <paramref name="reference"/>[i] / <paramref name="other"/>[i]: a
    /// speed-up from runs made back to back. On a shared machine the run times are often bimodal
    /// (all cores free, or not), and a ratio of two medians can then land on different modes; the
    /// paired ratios mostly compare like with like.
    /// </summary>
    public static double PairedSpeedup(IReadOnlyList<double> reference, IReadOnlyList<double> other)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(other);
        if (reference.Count != other.Count || reference.Count == 0)
        {
            throw new ArgumentException($"paired speed-up needs equally many runs, got {reference.Count} and {other.Count}");
        }
        return Percentile(reference.Zip(other, (r, o) => r / o).Order().ToArray(), 0.5);
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
