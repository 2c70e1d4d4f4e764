using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Cli;

/// <summary>Builds the model a verb works on from --checkpoint and/or --model.</summary>
internal static class ModelLoading
{
    /// <summary>
    /// Loads --checkpoint (with --model naming the model of a bare state dict) in eval mode, pruned
    /// and merged blocks included, onto <paramref name="device"/> (default the CPU).
    /// </summary>
    public static LoadedCheckpoint Load(string? checkpoint, string? model, Device? device = null)
    {
        if (checkpoint is null)
        {
            throw new ArgumentException("--checkpoint FILE is required");
        }
        return Checkpoint.Load(checkpoint, model, PrunedModels.LoadOptionsOn(device ?? Devices.Cpu));
    }

    /// <summary>
    /// The checkpoint's model when --checkpoint is given; otherwise a freshly initialised --model,
    /// where small inputs (≤ 64 px) use the family's small-input stem unless --stem-stride says otherwise;
    /// on <paramref name="device"/> (default the CPU).
    /// </summary>
    public static ImageClassifier FromOptions(string? checkpoint, string? model, int inChans, int numClasses, int? stemStride, int inputSize, Device? device = null)
    {
        if (checkpoint is not null)
        {
            return Load(checkpoint, model, device).Model;
        }
        if (model is null)
        {
            throw new ArgumentException("give --model NAME (see `updp models`) or --checkpoint FILE");
        }
        return ModelRegistry.Create(ModelConfig.ForInput(model, inputSize, inChans, numClasses, stemStride)).MoveTo(device ?? Devices.Cpu);
    }

    /// <summary>
    /// Inputs to check a transformed model (merged, exported) against the original on: the first
    /// <paramref name="count"/> test images of <paramref name="data"/>, prepared as the checkpoint's
    /// sidecar says, when the model takes one-channel images of that kind; otherwise one batch of
    /// up to 8 seeded standard-normal inputs of <paramref name="inputSize"/>² (or the sidecar's size,
    /// else 32): every weight takes part in every output, so a few inputs show a wrong one.
    /// </summary>
    public static List<Tensor> CheckInputs(string data, CheckpointMeta? meta, ImageClassifier model, int count, int? inputSize = null, int batch = 128)
    {
        var preprocessing = meta?.Preprocessing;
        if (preprocessing is not null && UsesRealImages(meta, model, count, inputSize))
        {
            // A check needs a sample, not every image: unusable files are left out, not fatal.
            var test = DatasetCatalog.Resolve(data).LoadSplits(null, 0, new DataLoadOptions { SkipBadImages = true, TestOnly = true }).Test.Take(count);
            return TrainingRun.EvalLoader(test, preprocessing, batch).Epoch(0).Select(b => b.Images).ToList();
        }
        // A model built for one input size (a position embedding sized for it, say) is checked at that size.
        var size = inputSize ?? preprocessing?.InputSize ?? model.Config.ImgSize ?? 32;
        return [randn(Math.Clamp(count, 1, 8), model.Config.InChans, size, size, generator: new Generator(0))];
    }

    /// <summary>Whether <see cref="CheckInputs"/> uses real images for this checkpoint and size.</summary>
    public static bool UsesRealImages(CheckpointMeta? meta, ImageClassifier model, int count, int? inputSize) =>
        count > 0 && meta?.Preprocessing is { } p && p.ChannelCount == model.Config.InChans && (inputSize is null || inputSize == p.InputSize);
}
