using System.Diagnostics;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Benchmarks;

/// <summary>Two models timed side by side, and the median of their per-pair time ratios (second / first).</summary>
public sealed record PairedLatency(LatencyStats First, LatencyStats Second, double MedianRatio);

/// <summary>
/// Compares two models' inference latency on shared, noisy cores: the runs alternate (first, second,
/// then second, first, …) so that a change in the machine's load hits both alike, and the ratio is
/// the median of the ratios of neighbouring runs rather than a ratio of two separately taken medians.
/// </summary>
public static class PairedBenchmark
{
    /// <summary>Eval-mode forward passes without gradients on the same random input.</summary>
    public static PairedLatency Inference(ImageClassifier first, ImageClassifier second, int batch, int resolution, int warmup = 3, int runs = 20)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        ArgumentOutOfRangeException.ThrowIfLessThan(runs, 1);
        if (first.Config.InChans != second.Config.InChans)
        {
            throw new ArgumentException($"the models take {first.Config.InChans} and {second.Config.InChans} input channels");
        }
        first.eval();
        second.eval();
        using var x = randn(batch, first.Config.InChans, resolution, resolution);
        double Time(ImageClassifier model)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var clock = Stopwatch.StartNew();
            model.call(x);
            return clock.Elapsed.TotalMilliseconds;
        }
        for (var i = 0; i < warmup; i++)
        {
            Time(first);
            Time(second);
        }
        var a = new double[runs];
        var b = new double[runs];
        for (var i = 0; i < runs; i++)
        {
            if (i % 2 == 0)
            {
                a[i] = Time(first);
                b[i] = Time(second);
            }
            else
            {
                b[i] = Time(second);
                a[i] = Time(first);
            }
        }
        var ratios = a.Zip(b, (ta, tb) => tb / ta).Order().ToArray();
        return new PairedLatency(Stats(a, batch), Stats(b, batch), LatencyStats.Percentile(ratios, 0.5));
    }

    private static LatencyStats Stats(double[] times, int batch)
    {
        var sorted = times.Order().ToArray();
        return new LatencyStats(LatencyStats.Percentile(sorted, 0.5), LatencyStats.Percentile(sorted, 0.1), LatencyStats.Percentile(sorted, 0.9), sorted.Length, batch);
    }
}
