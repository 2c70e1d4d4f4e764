namespace Updp.Training;

/// <summary>A snapshot of a running training, reported after every step.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Step">1-based step within the epoch.</param>
/// <param name="Loss">Running mean training loss of this epoch.</param>
/// <param name="Accuracy">Running training top-1 of this epoch.</param>
public sealed record TrainProgress(int Epoch, int Epochs, int Step, int StepsPerEpoch, double Loss, double Accuracy, double ImagesPerSecond, double LearningRate, TimeSpan Eta);

/// <summary>What one epoch achieved.</summary>
public sealed record EpochResult(int Epoch, double TrainLoss, double TrainTop1, double ValTop1, double ValLoss, double Seconds, bool IsBest)
{
    /// <summary>Of the training time, the seconds the step waited for its batch (decoding and augmenting not hidden by the prefetch).</summary>
    public double DataSeconds { get; init; }

    /// <summary>Seconds of the training steps alone (the epoch without validation).</summary>
    public double TrainSeconds { get; init; }

    /// <summary>
    /// The loss of each optimisation step of the epoch, in order (the loss the step minimised: with
    /// distillation, the distillation loss); NaN for a step skipped because its loss or gradient was not finite.
    /// Null (not written) in histories recorded before per-step losses were kept.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<float>? StepLosses { get; init; }
}
