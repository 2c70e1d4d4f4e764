using TorchSharp;
using TorchSharp.Modules;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Pruning.Blocks;

/// <summary>The forms a prunable block takes during depth pruning.</summary>
public enum BlockForm
{
    /// <summary>The block as trained: with its activation and LayerNorm.</summary>
    Original,

    /// <summary>The progressive form (<see cref="IProgressiveBlock"/>): original at λ=0, linear at λ=1.</summary>
    Pruned,

    /// <summary>A pruned block at λ=1 collapsed into fewer, cheaper layers.</summary>
    Merged,

    /// <summary>Removed: the block computes the identity (the <c>drop</c> comparison method).</summary>
    Dropped,

    /// <summary>
    /// On its way to <see cref="Dropped"/> (<see cref="IFadingBlock"/>, the progressive drop of the
    /// <c>mixed</c> method): the original block at λ=0, its dropped form at λ=1.
    /// </summary>
    Fading,
}

/// <summary>
/// A block in its progressive form. It shares every weight of the original block and adds only
/// batch norms where the original has LayerNorm; with one λ ∈ [0,1] per block it computes
/// act_λ(x) = (1−λ)·σ(x) + λ·x and norm_λ(x) = (1−λ)·LN(x) + λ·BN(x): exactly the original block
/// at λ=0 and exactly the linear pruned block at λ=1.
/// </summary>
public interface IProgressiveBlock
{
    /// <summary>The mixing weight λ ∈ [0,1]; setting a value outside it throws.</summary>
    double Lambda { get; set; }

    /// <summary>
    /// The batch norms the pruned form adds (running statistics to calibrate before use); empty when
    /// it adds none and runs the original block's own, which it shares with the original form.
    /// </summary>
    IReadOnlyList<BatchNorm> BatchNorms { get; }
}

/// <summary>
/// A block in its progressive drop form (docs/METHOD.md#progressive-drop): with one λ ∈ [0,1] it
/// computes (1−λ)·B(x) + λ·D(x), B the original block and D its dropped form (<see cref="IBlockRule.Drop"/>).
/// For a block x + f(x) whose dropped form is the identity that is x + (1−λ)·f(x): the residual
/// branch fades out. It shares every tensor with the original block and adds none.
/// </summary>
public interface IFadingBlock
{
    /// <summary>The mixing weight λ ∈ [0,1]; setting a value outside it throws.</summary>
    double Lambda { get; set; }
}

/// <summary>
/// The pruning knowledge for one kind of block (e.g. a family's residual block): how to build its
/// pruned form and how to merge that into a smaller module. Rules are registered in <see cref="BlockRules"/>
/// for every module type a block of that kind can have, so no pruning stage names a model family.
/// </summary>
public interface IBlockRule
{
    /// <summary>The module types of the block kind in all its forms (original, pruned, merged).</summary>
    IReadOnlyCollection<Type> BlockTypes { get; }

    /// <summary>Which form <paramref name="block"/>, one of <see cref="BlockTypes"/>, is in.</summary>
    BlockForm FormOf(nn.Module block);

    /// <summary>
    /// The progressive form of an original block, sharing its weights, at λ=0. The added batch norms
    /// take the LayerNorm's weight and bias as their affine parameters.
    /// </summary>
    nn.Module<Tensor, Tensor> Prune(nn.Module block);

    /// <summary>
    /// The original form of a pruned block, sharing its weights (the module it was pruned from, say);
    /// the batch norms the pruned form added are left behind.
    /// </summary>
    nn.Module<Tensor, Tensor> Unprune(nn.Module prunedBlock);

    /// <summary>
    /// Why <paramref name="block"/> (in any form) cannot be replaced by the identity, e.g. because it
    /// changes the shape of its input; null when it can be dropped (the default).
    /// </summary>
    string? CannotDrop(nn.Module block) => null;

    /// <summary>
    /// A new module computing what the pruned block computes at λ=1 in eval mode (batch norms use
    /// their running statistics). It does not share the pruned block's tensors.
    /// </summary>
    nn.Module<Tensor, Tensor> Merge(nn.Module prunedBlock);

    /// <summary>
    /// The dropped form of a block in any form: what is left when its residual branch is removed. By
    /// default the identity; a block whose shortcut changes the shape (a strided projection, say)
    /// keeps its shortcut. The module's form must be <see cref="BlockForm.Dropped"/>.
    /// </summary>
    nn.Module<Tensor, Tensor> Drop(nn.Module block) => new DroppedBlock();
}

/// <summary>A model family whose blocks can be pruned: the capability <see cref="BlockRules"/> asks families for.</summary>
internal interface IPrunableFamily : IModelFamily
{
    /// <summary>The rules for the family's kinds of prunable block, covering every form of each.</summary>
    IEnumerable<IBlockRule> BlockRules { get; }
}

/// <summary>
/// The <see cref="IBlockRule"/>s known to the library, keyed by block module type: those of every
/// <see cref="IPrunableFamily"/> in <see cref="ModelFamilies.All"/>, and any added with <see cref="Register"/>.
/// </summary>
public static class BlockRules
{
    private static readonly Lock Gate = new();
    private static readonly Dictionary<Type, IBlockRule> Rules = [];

    static BlockRules()
    {
        foreach (var rule in ModelFamilies.All.OfType<IPrunableFamily>().SelectMany(f => f.BlockRules))
        {
            Register(rule);
        }
    }

    /// <summary>Adds a rule for its <see cref="IBlockRule.BlockTypes"/>; a type may have one rule only.</summary>
    public static void Register(IBlockRule rule)
    {
        ArgumentNullException.ThrowIfNull(rule);
        lock (Gate)
        {
            if (rule.BlockTypes.FirstOrDefault(Rules.ContainsKey) is { } taken)
            {
                throw new InvalidOperationException($"{taken.Name} already has a block rule ({Rules[taken].GetType().Name})");
            }
            foreach (var type in rule.BlockTypes)
            {
                Rules.Add(type, rule);
            }
        }
    }

    /// <summary>The rule for <paramref name="block"/>'s type, or null if none is registered.</summary>
    public static IBlockRule? Find(nn.Module block)
    {
        ArgumentNullException.ThrowIfNull(block);
        lock (Gate)
        {
            return Rules.GetValueOrDefault(block.GetType());
        }
    }

    /// <summary>The rule for <paramref name="block"/>'s type.</summary>
    /// <exception cref="NotSupportedException">No rule handles that type.</exception>
    public static IBlockRule For(nn.Module block) =>
        Find(block) ?? throw new NotSupportedException($"no pruning rule for blocks of type {block.GetType().Name}");
}
