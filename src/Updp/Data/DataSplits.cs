namespace Updp.Data;

/// <summary>
/// The three splits a run uses: training, validation (carved from the original training set) and
/// test (the original test set), plus the normalisation to apply to all of them.
/// </summary>
/// <param name="Train">Training images.</param>
/// <param name="Validation">Held-out training images used for pruning and model selection decisions.</param>
/// <param name="Test">The dataset's test set, for final reporting only.</param>
/// <param name="Normalization">Statistics shared by every split's transform.</param>
public sealed record DataSplits(LabeledImages Train, LabeledImages Validation, LabeledImages Test, Normalization Normalization)
{
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
                nameof(validationCount), validationCount, $"Cannot carve {validationCount} validation images from a training set of {count}.");
        }

        var order = Enumerable.Range(0, count).ToArray();
        new Random(seed).Shuffle(order);
        var validation = order[..validationCount];
        var train = order[validationCount..];
        Array.Sort(validation);
        Array.Sort(train);
        return (train, validation);
    }
}
