using static TorchSharp.torch;

namespace Updp.Training;

/// <summary>One mini-batch: NCHW float32 images and int64 class labels.</summary>
public readonly record struct Batch(Tensor Images, Tensor Labels);

/// <summary>Where the trainer gets its batches: a fresh (seeded) pass over the data per epoch.</summary>
public interface IBatchSource
{
    /// <summary>Number of batches one pass yields.</summary>
    int BatchesPerEpoch { get; }

    /// <summary>Number of images one pass yields.</summary>
    int ImageCount { get; }

    /// <summary>Batches of one pass; tensors are created on the calling thread.</summary>
    IEnumerable<Batch> Epoch(int epoch);
}
