namespace Updp.Data;

/// <summary>
/// The three splits a run uses: training, validation (carved from the original training set, or
/// the data set's own) and test (the data set's test split, or validation when it has none), plus
/// the statistics of MNIST-style data.
/// </summary>
/// <param name="Train">Training images.</param>
/// <param name="Validation">Held-out images used for pruning and model selection decisions.</param>
/// <param name="Test">The dataset's test set, for final reporting only (the validation split when <see cref="TestIsValidation"/>).</param>
/// <param name="Normalization">Statistics of MNIST-style one-channel data (computed from training); unused for image folders, which default to ImageNet's.</param>
public sealed record DataSplits(ImageDataset Train, ImageDataset Validation, ImageDataset Test, Normalization Normalization)
{
    /// <summary>True when the data set has no test split and <see cref="Test"/> is the validation split.</summary>
    public bool TestIsValidation { get; init; }

    /// <summary>What to call the split test results come from: <c>test</c>, or <c>val</c> when there is no test split.</summary>
    public string TestName => TestIsValidation ? "val" : "test";

    /// <summary>Images left out because they could not be used (with <see cref="DataLoadOptions.SkipBadImages"/>), with the reason.</summary>
    public IReadOnlyList<BadImageException> SkippedImages { get; init; } = [];

    /// <summary>Whether the images are MNIST-style in-memory sets (idx files) rather than image files.</summary>
    public bool IsIdx => Train is LabeledImages;

    /// <summary>Validation images carved from the training set unless told otherwise.</summary>
    public const int DefaultValidationCount = 5000;

    /// <summary>
    /// Moves <paramref name="validationCount"/> images, chosen by a shuffle seeded with
    /// <paramref name="seed"/>, from <paramref name="fullTrain"/> into the validation split. Both
    /// splits keep the original order of their images.
    /// </summary>
    /// <param name="fullTrain">The dataset's whole training set.</param>
    /// <param name="test">The dataset's test set.</param>
    /// <param name="validationCount">Images to move to validation; 0 gives an empty validation split.</param>
    /// <param name="seed">Shuffle seed; the same seed always picks the same images.</param>
    /// <param name="normalization">Known statistics, or null to compute them from the training split.</param>
    public static DataSplits Create(
        LabeledImages fullTrain, LabeledImages test, int validationCount = DefaultValidationCount, int seed = 0, Normalization? normalization = null)
    {
        ArgumentNullException.ThrowIfNull(fullTrain);
        ArgumentNullException.ThrowIfNull(test);
        var (trainIndices, validationIndices) = SplitIndices(fullTrain.Count, validationCount, seed);
        var train = fullTrain.Subset(trainIndices);
        var validation = fullTrain.Subset(validationIndices);
        return new DataSplits(train, validation, test, normalization ?? Normalization.ComputeFrom(train));
    }

    internal static (int[] Train, int[] Validation) SplitIndices(int count, int validationCount, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(validationCount);
        if (validationCount > count)
        {
            throw new ArgumentOutOfRangeException(
                nameof(validationCount), validationCount, $"--val-size {validationCount}: cannot carve {validationCount} validation images from a training set of {count}");
        }

        var order = Enumerable.Range(0, count).ToArray();
        new Random(seed).Shuffle(order);
        var validation = order[..validationCount];
        var train = order[validationCount..];
        Array.Sort(validation);
        Array.Sort(train);
        return (train, validation);
    }

    /// <summary>
    /// A seeded, stratified split: every class gives validation a share of its images proportional
    /// to its size (largest remainders settle the rounding, so exactly
    /// <paramref name="validationCount"/> are taken), chosen by a per-class shuffle. Both parts are
    /// in ascending index order.
    /// </summary>
    public static (int[] Train, int[] Validation) StratifiedSplitIndices(IReadOnlyList<int> labels, int classCount, int validationCount, int seed)
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfNegative(validationCount);
        if (validationCount >= labels.Count && labels.Count > 0)
        {
            throw new ArgumentOutOfRangeException(
                nameof(validationCount), validationCount, $"--val-size {validationCount}: cannot carve {validationCount} validation images from a training set of {labels.Count}; at least one must stay for training");
        }

        var byClass = Enumerable.Range(0, classCount).Select(_ => new List<int>()).ToArray();
        for (var i = 0; i < labels.Count; i++)
        {
            byClass[labels[i]].Add(i);
        }

        var exact = byClass.Select(members => (double)members.Count * validationCount / Math.Max(1, labels.Count)).ToArray();
        var take = exact.Select(e => (int)Math.Floor(e)).ToArray();
        var remaining = validationCount - take.Sum();
        foreach (var c in Enumerable.Range(0, classCount).OrderByDescending(c => exact[c] - take[c]).ThenBy(c => c).Take(remaining))
        {
            take[c]++;
        }

        var random = new Random(seed);
        var validation = new List<int>(validationCount);
        for (var c = 0; c < classCount; c++)
        {
            var members = byClass[c].ToArray();
            random.Shuffle(members);
            validation.AddRange(members.Take(take[c]));
        }

        var chosen = validation.ToHashSet();
        var train = Enumerable.Range(0, labels.Count).Where(i => !chosen.Contains(i)).ToArray();
        var val = validation.ToArray();
        Array.Sort(val);
        return (train, val);
    }

    /// <summary>
    /// These splits reading their images from decoded caches in <paramref name="directory"/> (built on
    /// first use: every image decoded once, stored at <paramref name="preprocessing"/>'s resize
    /// side and channels). Images that cannot be decoded fail the build, or with
    /// <paramref name="skipBad"/> are left out and added to <see cref="SkippedImages"/>. MNIST-style
    /// data is in memory already and returned as it is.
    /// </summary>
    public DataSplits WithCache(string directory, Preprocessing preprocessing, bool skipBad = false,
        IProgress<(string Stage, int Done, int Total)>? progress = null, bool testOnly = false)
    {
        ArgumentNullException.ThrowIfNull(preprocessing);
        if (IsIdx)
        {
            return this;
        }

        var skipped = SkippedImages.ToList();
        ImageDataset Attach(ImageDataset set, string name)
        {
            if (set is not ImageFileSet files)
            {
                return set;
            }

            var cache = DecodedImageCache.OpenOrBuild(files, directory, preprocessing.IsResizeCrop ? preprocessing.ResizeSize : null,
                preprocessing.ChannelCount, preprocessing.InterpolationKind, skipBad,
                progress is null ? null : new Progress<(int Done, int Total)>(p => progress.Report(($"caching {name} images", p.Done, p.Total))));
            var cached = files.WithCache(cache);
            var missing = Enumerable.Range(0, cache.Count).Where(cache.IsMissing).ToHashSet();
            skipped.AddRange(missing.Select(i => new BadImageException(files.PathOf(i), "cannot be decoded")));
            return cached.Without(missing);
        }

        if (testOnly)
        {
            return this with { Test = Attach(Test, TestName), SkippedImages = skipped };
        }

        var train = Attach(Train, "train");
        var validation = Attach(Validation, "val");
        var test = TestIsValidation ? validation : Attach(Test, "test");
        return this with { Train = train, Validation = validation, Test = test, SkippedImages = skipped };
    }
}
