namespace Updp.Data;

/// <summary>
/// Where an MNIST-style dataset's four idx files are, plus what is known about it in advance. Obtain one from
/// <see cref="DatasetCatalog.Resolve(string)"/>.
/// </summary>
/// <param name="Name">Catalog name (<c>fashion-mnist</c>, <c>mnist</c>) or the directory given.</param>
/// <param name="DirectoryPath">Directory holding the files.</param>
/// <param name="TrainImagesPath">The train-images-idx3-ubyte[.gz] file.</param>
/// <param name="TrainLabelsPath">The train-labels-idx1-ubyte[.gz] file.</param>
/// <param name="TestImagesPath">The t10k-images-idx3-ubyte[.gz] file.</param>
/// <param name="TestLabelsPath">The t10k-labels-idx1-ubyte[.gz] file.</param>
/// <param name="ClassNames">Class names, or null to number classes up to the largest label.</param>
/// <param name="Normalization">Known statistics, or null to compute them from the training split.</param>
public sealed record DatasetSource(
    string Name,
    string DirectoryPath,
    string TrainImagesPath,
    string TrainLabelsPath,
    string TestImagesPath,
    string TestLabelsPath,
    IReadOnlyList<string>? ClassNames,
    Normalization? Normalization) : IDataSource
{
    /// <inheritdoc/>
    public int DefaultValidationCount(int trainCount) => DataSplits.DefaultValidationCount;

    /// <inheritdoc/>
    DataSplits IDataSource.LoadSplits(int? validationCount, int seed, DataLoadOptions? options) =>
        // A verb that scores only the test split (eval) holds nothing out: a small training file need not hold 5,000 validation images.
        LoadSplits(options?.TestOnly == true ? 0 : validationCount ?? DataSplits.DefaultValidationCount, seed);

    /// <summary>Reads the train and test files and carves a validation split from train.</summary>
    /// <param name="validationCount">Training images moved to the validation split.</param>
    /// <param name="seed">Seed of the shuffle that picks the validation images.</param>
    public DataSplits LoadSplits(int validationCount = DataSplits.DefaultValidationCount, int seed = 0)
    {
        var train = LabeledImages.FromIdxFiles(TrainImagesPath, TrainLabelsPath, ClassNames);
        var test = LabeledImages.FromIdxFiles(TestImagesPath, TestLabelsPath, ClassNames);
        if (ClassNames is null)
        {
            RequireEveryClass(train, TrainLabelsPath);
        }
        if (ClassNames is null && train.ClassCount != test.ClassCount)
        {
            // Numbered names come from the largest label, which may differ between the two files.
            var names = LabeledImages.NumberedClassNames(Math.Max(train.ClassCount, test.ClassCount));
            train = train.WithClassNames(names);
            test = test.WithClassNames(names);
        }

        if (train.Height != test.Height || train.Width != test.Width)
        {
            throw new InvalidDataException(
                $"Image size mismatch: '{TrainImagesPath}' has {train.Height}x{train.Width} images but '{TestImagesPath}' has {test.Height}x{test.Width}.");
        }

        return DataSplits.Create(train, test, validationCount, seed, Normalization);
    }

    // Without class names the classes are the labels 0…max; a label with no class below it (a stray 255
    // among 0–9, say) would silently make a model with hundreds of empty classes.
    private static void RequireEveryClass(LabeledImages train, string labelsPath)
    {
        var present = new bool[train.ClassCount];
        foreach (var label in train.Labels)
        {
            present[label] = true;
        }
        var missing = Array.IndexOf(present, false);
        if (missing >= 0)
        {
            throw new InvalidDataException(
                $"Labels file '{labelsPath}' has labels up to {train.ClassCount - 1} but none of class {missing}: " +
                $"the labels must number the classes 0–{train.ClassCount - 1}, each with training images ({present.Count(p => p)} classes are present)");
        }
    }
}
