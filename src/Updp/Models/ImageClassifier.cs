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

    /// <summary>Runs the classifier up to (and including) the pooled features, without the final layer.</summary>
    public abstract Tensor ForwardFeatures(Tensor x);
}
