namespace Updp.Data;

/// <summary>How a <see cref="BatchLoader"/> cuts an epoch into batches.</summary>
public sealed record BatchLoaderOptions
{
    /// <summary>Images per batch.</summary>
    public int BatchSize { get; init; } = 128;

    /// <summary>Visit images in a fresh seeded order each epoch (training) instead of in order (evaluation).</summary>
    public bool Shuffle { get; init; }

    /// <summary>Skip the final batch when it would be smaller than <see cref="BatchSize"/>.</summary>
    public bool DropLast { get; init; }

    /// <summary>Base seed; epoch <c>e</c> uses <c>Seed + e</c> for its order and augmentation.</summary>
    public int Seed { get; init; }

    /// <summary>Batches prepared ahead of the consumer on the background thread.</summary>
    public int PrefetchBatches { get; init; } = 3;

    /// <summary>Threads that decode and transform the images of one batch, for sets read from files.</summary>
    public int Workers { get; init; } = Environment.ProcessorCount;

    /// <summary>Where the batches' tensors go (made on the CPU, then copied there); null for the CPU.</summary>
    public TorchSharp.torch.Device? Device { get; init; }
}
