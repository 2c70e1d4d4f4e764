namespace Updp.Data;

/// <summary>A data set found by <see cref="DatasetCatalog.Resolve(string)"/>, ready to be loaded into splits.</summary>
public interface IDataSource
{
    /// <summary>What the user called it: a catalog name, a directory or a file list.</summary>
    string Name { get; }

    /// <summary>
    /// Loads the train, validation and test splits. Validation images are carved from train
    /// (<paramref name="validationCount"/> of them, or <see cref="DefaultValidationCount"/>, picked by <paramref name="seed"/>) unless the
    /// data set has its own validation split.
    /// </summary>
    DataSplits LoadSplits(int? validationCount, int seed, DataLoadOptions? options = null);

    /// <summary>The validation size used when none is given.</summary>
    int DefaultValidationCount(int trainCount);
}

/// <summary>How files are checked while a data set is loaded.</summary>
public sealed record DataLoadOptions
{
    /// <summary>Leave out images that cannot be used (counted in <see cref="DataSplits.SkippedImages"/>) instead of failing on the first.</summary>
    public bool SkipBadImages { get; init; }

    /// <summary>
    /// Decode every image while checking (not only its header), so that broken data is found before
    /// work starts; <see cref="SkipBadImages"/> without a decoded cache needs it to leave truncated files out.
    /// </summary>
    public bool DecodeToCheck { get; init; }

    /// <summary>Only the split test results come from is needed (evaluation): the others are listed but their files not checked.</summary>
    public bool TestOnly { get; init; }

    /// <summary>Decoding and size limits.</summary>
    public ImageReader Reader { get; init; } = ImageReader.Default;

    /// <summary>Receives (what, done, total) while files are listed and checked.</summary>
    public IProgress<(string Stage, int Done, int Total)>? Progress { get; init; }
}
