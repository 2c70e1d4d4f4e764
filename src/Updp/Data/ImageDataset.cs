namespace Updp.Data;

/// <summary>
/// A labelled set of images that a <see cref="BatchLoader"/> can cut into batches: the MNIST-style
/// in-memory <see cref="LabeledImages"/>, or files on disk (<see cref="ImageFileSet"/>) decoded
/// when a batch needs them. Instances never change; <see cref="Take"/> and <see cref="Subset"/>
/// return new sets.
/// </summary>
public abstract class ImageDataset
{
    /// <summary>Number of images.</summary>
    public abstract int Count { get; }

    /// <summary>Class names indexed by label.</summary>
    public abstract IReadOnlyList<string> ClassNames { get; }

    /// <summary>Number of classes, the model's output width.</summary>
    public int ClassCount => ClassNames.Count;

    /// <summary>Where the images come from, for messages (a dataset name, a folder, a file list).</summary>
    public abstract string Origin { get; }

    /// <summary>The label of image <paramref name="index"/>.</summary>
    public abstract int LabelOf(int index);

    /// <summary>Decodes (or looks up) image <paramref name="index"/>.</summary>
    public abstract PixelImage GetPixels(int index);

    /// <summary>What to call image <paramref name="index"/> in messages: its file, or its position.</summary>
    public virtual string Describe(int index) => $"image {index} of {Origin}";

    /// <summary>The images at <paramref name="indices"/>, in that order (repeats allowed).</summary>
    public abstract ImageDataset Subset(ReadOnlySpan<int> indices);

    /// <summary>
    /// Whether getting an image costs real work (decoding a file), so that a loader should prepare a
    /// batch's images in parallel, each with its own seeded random stream. In-memory sets are
    /// prepared in order from one stream, which keeps their results what they always were.
    /// </summary>
    public virtual bool PreparesInParallel => false;

    /// <summary>The first <c>min(count, Count)</c> images, for quick runs on a slice.</summary>
    public ImageDataset Take(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return count >= Count ? this : Subset(Enumerable.Range(0, count).ToArray());
    }

    /// <summary>Number of images of each class, indexed by label.</summary>
    public int[] CountPerClass()
    {
        var counts = new int[ClassCount];
        for (var i = 0; i < Count; i++)
        {
            counts[LabelOf(i)]++;
        }

        return counts;
    }
}
