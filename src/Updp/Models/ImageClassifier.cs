using TorchSharp;
using static TorchSharp.torch;

namespace Updp.Models;

/// <summary>A prunable block as the pruning stages see it: its global index, stage and module path.</summary>
/// <param name="Index">0-based, global across stages; every verb that takes block indices uses it.</param>
/// <param name="Stage">0-based stage (resolution level) the block belongs to.</param>
/// <param name="Path">The block's parameter-name prefix, e.g. <c>stages.1.blocks.0</c>.</param>
public sealed record PrunableBlock(int Index, int Stage, string Path, nn.Module Module);

/// <summary>An image classifier whose residual blocks are described for depth pruning.</summary>
public abstract class ImageClassifier : nn.Module<Tensor, Tensor>
{
    protected ImageClassifier(string name, ModelConfig config) : base(name) => Config = config;

    public ModelConfig Config { get; }

    /// <summary>The prunable residual blocks in execution order.</summary>
    public abstract IReadOnlyList<PrunableBlock> Blocks { get; }

    /// <summary>
    /// Puts <paramref name="module"/> in the place of block <paramref name="index"/>: its parameters
    /// and buffers appear under the block's <see cref="PrunableBlock.Path"/> in <c>named_parameters()</c>
    /// and <c>state_dict()</c>, in the same position as the old block's, and the old block's are gone.
    /// The module takes the model's train/eval mode, and <see cref="Blocks"/> lists it.
    /// </summary>
    /// <returns>The module it replaced, not disposed: a pruned form shares its parameters.</returns>
    /// <exception cref="NotSupportedException">The family does not implement it (models without prunable blocks).</exception>
    public virtual nn.Module<Tensor, Tensor> ReplaceBlock(int index, nn.Module<Tensor, Tensor> module) =>
        throw new NotSupportedException($"{GetType().Name} does not support replacing its blocks");

    /// <summary>Runs the classifier up to (and including) the pooled features, without the final layer.</summary>
    public abstract Tensor ForwardFeatures(Tensor x);
}
