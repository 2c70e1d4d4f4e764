using TorchSharp;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Pruning.Blocks;

/// <summary>
/// Changes the form of a model's prunable blocks (indices as in <see cref="ImageClassifier.Blocks"/>)
/// through the <see cref="BlockRules"/>, for any model family. Merging is done by
/// <see cref="Merger.MergeAll"/>, which verifies the result. A block put in place is moved to the
/// model's device (the rules build what they add on the CPU).
/// </summary>
public static class BlockPruning
{
    /// <summary>The form block <paramref name="index"/> is in.</summary>
    public static BlockForm FormOf(this ImageClassifier model, int index) => FormOf(Block(model, index).Module);

    /// <summary>
    /// Puts block <paramref name="index"/> in its progressive form at λ=0 (the model computes what it
    /// did before), or returns it if it is already pruned.
    /// </summary>
    /// <exception cref="InvalidOperationException">The block is merged or dropped.</exception>
    public static IProgressiveBlock Prune(this ImageClassifier model, int index)
    {
        var block = Block(model, index);
        switch (FormOf(block.Module))
        {
            case BlockForm.Pruned:
                return (IProgressiveBlock)block.Module;
            case BlockForm.Original:
                var pruned = BlockRules.For(block.Module).Prune(block.Module).MoveTo(Devices.Of(model));
                model.ReplaceBlock(index, pruned);
                return (IProgressiveBlock)pruned;
            case var form:
                throw new InvalidOperationException($"{Describe(block)} is {form.ToString().ToLowerInvariant()}; only an original block can be pruned");
        }
    }

    /// <summary>
    /// Puts a pruned block back in its original form, with the weights it has now (trained in the
    /// progressive form, say); the batch norms the pruned form added are discarded. An original block
    /// is left as it is.
    /// </summary>
    /// <returns>The block in its original form.</returns>
    /// <exception cref="InvalidOperationException">The block is merged or dropped.</exception>
    public static nn.Module Unprune(this ImageClassifier model, int index)
    {
        var block = Block(model, index);
        switch (FormOf(block.Module))
        {
            case BlockForm.Original:
                return block.Module;
            case BlockForm.Pruned:
                var original = BlockRules.For(block.Module).Unprune(block.Module).MoveTo(Devices.Of(model));
                // The pruned module is not disposed: it shares every tensor but its batch norms with the original.
                model.ReplaceBlock(index, original);
                return original;
            case var form:
                throw new InvalidOperationException($"{Describe(block)} is {form.ToString().ToLowerInvariant()}; only a pruned block can be unpruned");
        }
    }

    /// <summary>Why block <paramref name="index"/> cannot be dropped (e.g. it changes the shape of its input), or null when it can.</summary>
    public static string? CannotDrop(this ImageClassifier model, int index)
    {
        var module = Block(model, index).Module;
        return FormOf(module) is BlockForm.Dropped or BlockForm.Fading ? null : BlockRules.For(module).CannotDrop(module);
    }

    /// <summary>
    /// Puts block <paramref name="index"/> in its progressive drop form at λ=0 (the model computes
    /// what it did before; docs/METHOD.md#progressive-drop), or returns it if it is already fading.
    /// At λ=1 the block computes its dropped form; <see cref="Merger.MergeAll"/> then drops it.
    /// </summary>
    /// <exception cref="ArgumentException">The block cannot be dropped (<see cref="IBlockRule.CannotDrop"/>).</exception>
    /// <exception cref="InvalidOperationException">The block is not original (pruned, merged or dropped).</exception>
    public static IFadingBlock Fade(this ImageClassifier model, int index)
    {
        var block = Block(model, index);
        switch (FormOf(block.Module))
        {
            case BlockForm.Fading:
                return (IFadingBlock)block.Module;
            case BlockForm.Original:
                if (model.CannotDrop(index) is { } reason)
                {
                    throw new ArgumentException($"{Describe(block)} cannot be dropped: {reason}", nameof(index));
                }
                var original = (nn.Module<Tensor, Tensor>)block.Module;
                var fading = new FadingBlock(original, BlockRules.For(original).Drop(original).MoveTo(Devices.Of(model)));
                model.ReplaceBlock(index, fading);
                return fading;
            case var form:
                throw new InvalidOperationException($"{Describe(block)} is {form.ToString().ToLowerInvariant()}; only an original block can fade out");
        }
    }

    /// <summary>The blocks in their progressive drop form, in execution order.</summary>
    public static IEnumerable<(PrunableBlock Block, IFadingBlock Fading)> FadingBlocks(this ImageClassifier model) =>
        model.Blocks.Where(b => b.Module is IFadingBlock).Select(b => (b, (IFadingBlock)b.Module));

    /// <summary>
    /// Replaces block <paramref name="index"/>, in whatever form, by its dropped form: the identity,
    /// or only its shortcut where that changes the shape (<see cref="IBlockRule.Drop"/>).
    /// </summary>
    /// <exception cref="ArgumentException">The block cannot be dropped (<see cref="IBlockRule.CannotDrop"/>).</exception>
    public static void Drop(this ImageClassifier model, int index)
    {
        var block = Block(model, index);
        if (FormOf(block.Module) == BlockForm.Dropped)
        {
            return;
        }
        if (model.CannotDrop(index) is { } reason)
        {
            throw new ArgumentException($"{Describe(block)} cannot be dropped: {reason}", nameof(index));
        }
        model.ReplaceBlock(index, DroppedForm(block.Module).MoveTo(Devices.Of(model)));
    }

    /// <summary>
    /// Block <paramref name="index"/>'s dropped form as a module of its own, on the model's device,
    /// without putting it in the model: a supernet or search step swaps it in with
    /// <see cref="ImageClassifier.ReplaceBlock"/> and back. It shares the block's tensors.
    /// </summary>
    /// <exception cref="ArgumentException">The block cannot be dropped.</exception>
    internal static nn.Module<Tensor, Tensor> DroppedForm(this ImageClassifier model, int index)
    {
        var block = Block(model, index);
        if (model.CannotDrop(index) is { } reason)
        {
            throw new ArgumentException($"{Describe(block)} cannot be dropped: {reason}", nameof(index));
        }
        return DroppedForm(block.Module).MoveTo(Devices.Of(model));
    }

    /// <summary>The blocks in their progressive form, in execution order.</summary>
    public static IEnumerable<(PrunableBlock Block, IProgressiveBlock Progressive)> PrunedBlocks(this ImageClassifier model) =>
        model.Blocks.Where(b => b.Module is IProgressiveBlock).Select(b => (b, (IProgressiveBlock)b.Module));

    /// <summary>Replaces a pruned block at λ=1 by its merged form, unverified; returns the pruned block.</summary>
    internal static nn.Module<Tensor, Tensor> Merge(this ImageClassifier model, int index, Func<nn.Module, nn.Module<Tensor, Tensor>>? merge = null)
    {
        var block = Block(model, index);
        if (block.Module is not IProgressiveBlock progressive)
        {
            throw new InvalidOperationException($"{Describe(block)} is {FormOf(block.Module).ToString().ToLowerInvariant()}; only a pruned block can be merged");
        }
        if (progressive.Lambda != 1)
        {
            throw new InvalidOperationException($"{Describe(block)} has λ = {progressive.Lambda:G6}; only a fully pruned block (λ = 1) can be merged");
        }
        var merged = (merge ?? BlockRules.For(block.Module).Merge)(block.Module).MoveTo(Devices.Of(model));
        return model.ReplaceBlock(index, merged);
    }

    /// <summary>Replaces a fading block at λ=1 by its dropped form, which computes the same; returns the fading block.</summary>
    internal static nn.Module<Tensor, Tensor> FinishFade(this ImageClassifier model, int index)
    {
        var block = Block(model, index);
        if (block.Module is not FadingBlock fading)
        {
            throw new InvalidOperationException($"{Describe(block)} is {FormOf(block.Module).ToString().ToLowerInvariant()}; only a fading block can finish fading");
        }
        if (fading.Lambda != 1)
        {
            throw new InvalidOperationException($"{Describe(block)} has λ = {fading.Lambda:G6}; only a fully faded block (λ = 1) can be dropped");
        }
        return model.ReplaceBlock(index, fading.Dropped);
    }

    internal static string Describe(PrunableBlock block) => $"block {block.Index} ({block.Path})";

    private static BlockForm FormOf(nn.Module module) => module switch
    {
        DroppedBlock => BlockForm.Dropped,
        FadingBlock => BlockForm.Fading,
        _ => BlockRules.For(module).FormOf(module),
    };

    // A fading block's dropped form is the one it fades to.
    private static nn.Module<Tensor, Tensor> DroppedForm(nn.Module module) =>
        module is FadingBlock fading ? fading.Dropped : BlockRules.For(module).Drop(module);

    private static PrunableBlock Block(ImageClassifier model, int index)
    {
        ArgumentNullException.ThrowIfNull(model);
        return index >= 0 && index < model.Blocks.Count
            ? model.Blocks[index]
            : throw new ArgumentOutOfRangeException(nameof(index), index, $"the model has {model.Blocks.Count} prunable blocks");
    }
}

/// <summary>A dropped block: the identity, with no parameters.</summary>
internal sealed class DroppedBlock : nn.Module<Tensor, Tensor>
{
    public DroppedBlock() : base(nameof(DroppedBlock))
    {
    }

    public override Tensor forward(Tensor input) => input;
}
