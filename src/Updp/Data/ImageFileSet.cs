namespace Updp.Data;

/// <summary>
/// Images stored as files (JPEG, PNG, BMP, WebP, GIF), decoded when a batch needs them, or read
/// from a <see cref="DecodedImageCache"/> when one is attached. Images come out as RGB; the batch
/// loader converts them to the model's channels.
/// </summary>
public sealed class ImageFileSet : ImageDataset
{
    private readonly string[] _paths;
    private readonly int[] _labels;
    private readonly int[] _cacheIndex;

    /// <summary>Creates a set over <paramref name="paths"/> with one label each.</summary>
    /// <param name="paths">Image files.</param>
    /// <param name="labels">Labels, each below <c>classNames.Count</c>.</param>
    /// <param name="classNames">Class names indexed by label.</param>
    /// <param name="origin">Where the set comes from, for messages.</param>
    /// <param name="reader">How files are decoded and which sizes are accepted.</param>
    public ImageFileSet(IReadOnlyList<string> paths, IReadOnlyList<int> labels, IReadOnlyList<string> classNames, string origin, ImageReader? reader = null)
        : this([.. paths], [.. labels], classNames, origin, reader ?? ImageReader.Default, cache: null, cacheIndex: null)
    {
    }

    private ImageFileSet(string[] paths, int[] labels, IReadOnlyList<string> classNames, string origin, ImageReader reader,
        DecodedImageCache? cache, int[]? cacheIndex)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        ArgumentNullException.ThrowIfNull(origin);
        if (paths.Length != labels.Length)
        {
            throw new ArgumentException($"{paths.Length} paths but {labels.Length} labels");
        }

        if (classNames.Count == 0)
        {
            throw new ArgumentException("a data set needs at least one class", nameof(classNames));
        }

        var bad = Array.FindIndex(labels, l => l < 0 || l >= classNames.Count);
        if (bad >= 0)
        {
            throw new ArgumentException($"label {labels[bad]} of '{paths[bad]}' is not a class index (0–{classNames.Count - 1})");
        }

        _paths = paths;
        _labels = labels;
        ClassNames = classNames;
        Origin = origin;
        Reader = reader;
        Cache = cache;
        _cacheIndex = cacheIndex ?? Enumerable.Range(0, paths.Length).ToArray();
    }

    /// <inheritdoc/>
    public override int Count => _paths.Length;

    /// <inheritdoc/>
    public override IReadOnlyList<string> ClassNames { get; }

    /// <inheritdoc/>
    public override string Origin { get; }

    /// <summary>How files are decoded.</summary>
    public ImageReader Reader { get; }

    /// <summary>The decoded images, when a cache is attached.</summary>
    public DecodedImageCache? Cache { get; }

    /// <summary>The image files, in set order.</summary>
    public IReadOnlyList<string> Paths => _paths;

    /// <inheritdoc/>
    public override bool PreparesInParallel => true;

    /// <inheritdoc/>
    public override int LabelOf(int index) => _labels[index];

    /// <summary>The file of image <paramref name="index"/>.</summary>
    public string PathOf(int index) => _paths[index];

    /// <inheritdoc/>
    public override string Describe(int index) => $"'{_paths[index]}'";

    /// <inheritdoc/>
    public override PixelImage GetPixels(int index) =>
        Cache is { } cache ? cache.Get(_cacheIndex[index]) : Reader.Read(_paths[index], 3);

    /// <inheritdoc/>
    public override ImageFileSet Subset(ReadOnlySpan<int> indices)
    {
        var paths = new string[indices.Length];
        var labels = new int[indices.Length];
        var cacheIndex = new int[indices.Length];
        for (var i = 0; i < indices.Length; i++)
        {
            var source = indices[i];
            if ((uint)source >= (uint)Count)
            {
                throw new ArgumentOutOfRangeException(nameof(indices), $"index {source} at position {i} is outside 0..{Count - 1}");
            }

            paths[i] = _paths[source];
            labels[i] = _labels[source];
            cacheIndex[i] = _cacheIndex[source];
        }

        return new ImageFileSet(paths, labels, ClassNames, Origin, Reader, Cache, cacheIndex);
    }

    /// <summary>This set reading its images from <paramref name="cache"/>, which holds this set's images in this order.</summary>
    public ImageFileSet WithCache(DecodedImageCache cache)
    {
        ArgumentNullException.ThrowIfNull(cache);
        if (cache.Count != Count)
        {
            throw new ArgumentException($"the cache holds {cache.Count} images, the set {Count}");
        }

        return new ImageFileSet(_paths, _labels, ClassNames, Origin, Reader, cache, cacheIndex: null);
    }

    /// <summary>The images whose indices are not in <paramref name="excluded"/>, in order.</summary>
    public ImageFileSet Without(IReadOnlySet<int> excluded)
    {
        ArgumentNullException.ThrowIfNull(excluded);
        return excluded.Count == 0 ? this : Subset(Enumerable.Range(0, Count).Where(i => !excluded.Contains(i)).ToArray());
    }
}
