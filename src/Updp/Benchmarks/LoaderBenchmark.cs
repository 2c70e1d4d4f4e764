using System.Diagnostics;
using Updp.Data;

namespace Updp.Benchmarks;

/// <summary>How fast a loader turns files (or cached pixels) into batches, alone: no model runs.</summary>
/// <param name="Images">Images delivered.</param>
/// <param name="Seconds">Wall time.</param>
/// <param name="Workers">Threads that prepared images.</param>
public sealed record LoaderStats(int Images, double Seconds, int Workers)
{
    /// <summary>Images per second.</summary>
    public double ImagesPerSecond => Images / Math.Max(Seconds, 1e-9);
}

/// <summary>Times a <see cref="BatchLoader"/>'s epochs: decoding, augmentation and the tensor copy.</summary>
public static class LoaderBenchmark
{
    /// <summary>Takes up to <paramref name="batches"/> batches of epoch <paramref name="epoch"/> and times them.</summary>
    public static LoaderStats Run(BatchLoader loader, int batches, int epoch = 0)
    {
        ArgumentNullException.ThrowIfNull(loader);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batches);
        var clock = Stopwatch.StartNew();
        var images = 0;
        foreach (var batch in loader.Epoch(epoch).Take(batches))
        {
            using (batch)
            {
                images += batch.Count;
            }
        }

        return new LoaderStats(images, clock.Elapsed.TotalSeconds, loader.Workers);
    }
}
