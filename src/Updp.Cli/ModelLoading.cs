using Updp.Checkpoints;
using Updp.Models;
using Updp.Pruning;

namespace Updp.Cli;

/// <summary>Builds the model a verb works on from --checkpoint and/or --model.</summary>
internal static class ModelLoading
{
    /// <summary>Loads --checkpoint (with --model naming the model of a bare state dict) in eval mode, pruned and merged blocks included.</summary>
    public static LoadedCheckpoint Load(string? checkpoint, string? model) =>
        checkpoint is null
            ? throw new ArgumentException("--checkpoint FILE is required")
            : Checkpoint.Load(checkpoint, model, PrunedModels.LoadOptions);

    /// <summary>
    /// The checkpoint's model when --checkpoint is given; otherwise a freshly initialised --model,
    /// where small inputs (≤ 64 px) use the family's small-input stem unless --stem-stride says otherwise.
    /// </summary>
    public static ImageClassifier FromOptions(string? checkpoint, string? model, int inChans, int numClasses, int? stemStride, int inputSize)
    {
        if (checkpoint is not null)
        {
            return Checkpoint.Load(checkpoint, model, PrunedModels.LoadOptions).Model;
        }
        if (model is null)
        {
            throw new ArgumentException("give --model NAME (see `updp models`) or --checkpoint FILE");
        }
        return ModelRegistry.Create(ModelConfig.ForInput(model, inputSize, inChans, numClasses, stemStride));
    }
}
