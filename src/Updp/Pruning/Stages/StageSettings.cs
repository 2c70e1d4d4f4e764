using Updp.Data;

namespace Updp.Pruning;

/// <summary>
/// The settings every pruning stage shares: which data, which images are held out, how batch norms
/// are calibrated and how evaluation batches are sized. One record, composed into each stage's
/// options, so that the stages of one run cannot disagree about them.
/// </summary>
public sealed record StageSettings
{
    /// <summary><c>fashion-mnist</c>, <c>mnist</c>, a directory with the four idx files, an image folder or a CSV list.</summary>
    public required string Data { get; init; }

    /// <summary>Bad-image handling and the decoded cache for image-folder data (preprocessing comes from the checkpoint).</summary>
    public DataOptions DataOptions { get; init; } = new();

    /// <summary>Validation images held out; null takes the count the checkpoint's sidecar records (else the data set's default).</summary>
    public int? ValidationCount { get; init; }

    /// <summary>Seed of the validation split; null takes the checkpoint's (else the stage's seed).</summary>
    public int? SplitSeed { get; init; }

    /// <summary>Train on the first N training images only (quick runs and tests); the search calibrates on the whole split.</summary>
    public int? TrainLimit { get; init; }

    /// <summary>Training batches batch norms are calibrated on (supernet preparation, every scored subset, stage 3's pruned blocks).</summary>
    public int CalibrationBatches { get; init; } = 10;

    public int CalibrationBatchSize { get; init; } = 128;

    public int EvalBatchSize { get; init; } = 256;

    /// <summary>Random-crop padding of the training stages' augmentation (MNIST-style data).</summary>
    public int CropPadding { get; init; } = ImageTransform.DefaultCropPadding;

    public bool HorizontalFlip { get; init; } = true;

    /// <summary>
    /// Where the stages load, train and evaluate their models (docs/DEVICES.md); ONNX export and
    /// ONNX Runtime stay on the CPU, checkpoints are written from the CPU.
    /// </summary>
    public TorchSharp.torch.Device Device { get; init; } = Devices.Cpu;
}
