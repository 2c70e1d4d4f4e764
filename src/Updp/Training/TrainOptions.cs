namespace Updp.Training;

/// <summary>
/// A training recipe. Defaults follow timm's AdamW recipe (cosine, warm-up, label smoothing 0.1,
/// weight decay 0.05) with a learning rate scaled for small batches.
/// </summary>
public sealed record TrainOptions
{
    public int Epochs { get; init; } = 10;

    public int BatchSize { get; init; } = 64;

    public double LearningRate { get; init; } = 2e-3;

    /// <summary>
    /// The learning rate <c>updp train --pretrained</c> uses unless told otherwise: fine-tuning
    /// ImageNet weights at the from-scratch 2e-3 scored 3 points lower on held-out images than at
    /// 5e-4 (docs/RESULTS.md, "Fine-tuning from ImageNet weights").
    /// </summary>
    public const double PretrainedLearningRate = 5e-4;

    public double MinLearningRate { get; init; } = 1e-5;

    public double WeightDecay { get; init; } = 0.05;

    public double WarmupEpochs { get; init; } = 1;

    public double LabelSmoothing { get; init; } = 0.1;

    public int Seed { get; init; }

    /// <summary>Stops each epoch after this many steps (quick runs and tests); null means the whole pass.</summary>
    public int? MaxStepsPerEpoch { get; init; }
}
