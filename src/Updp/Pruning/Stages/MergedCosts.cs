using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>Parameters and MACs of a model.</summary>
public sealed record ModelCost(long Params, long Macs);

/// <summary>
/// Parameters and MACs of a model with a subset of its blocks pruned and merged (stage 4's output,
/// what users deploy), for any subset of a set of candidate blocks, without building each model.
/// Measured once: a fresh model of the same configuration is profiled with every block original and
/// again with every candidate pruned at λ=1 and merged (<see cref="Merger.MergeAll"/>, verified).
/// A block's cost depends only on its own form and input shape, and merging keeps the shape, so
/// the cost of a subset is the original cost minus the savings of its blocks. For the mixed space
/// (docs/METHOD.md#mixed) a third model with every droppable candidate dropped gives the savings of
/// dropping: the block's cost, less what its dropped form keeps (a strided shortcut, say).
/// </summary>
public sealed class MergedCosts
{
    private readonly Dictionary<int, ModelCost> _savings;
    private readonly Dictionary<int, ModelCost> _dropSavings;

    private MergedCosts(ModelCost original, Dictionary<int, ModelCost> savings, Dictionary<int, ModelCost> dropSavings)
    {
        Original = original;
        _savings = savings;
        _dropSavings = dropSavings;
    }

    /// <summary>The cost with every block original.</summary>
    public ModelCost Original { get; }

    /// <summary>The candidate blocks whose merged costs are known.</summary>
    public IReadOnlyCollection<int> Blocks => _savings.Keys;

    /// <summary>The candidate blocks whose dropped costs are known.</summary>
    public IReadOnlyCollection<int> DroppableBlocks => _dropSavings.Keys;

    /// <summary>
    /// Profiles models of <paramref name="config"/> on <paramref name="inputSize"/>² inputs: with
    /// <paramref name="blocks"/> merged, and with <paramref name="droppable"/> (if any) dropped.
    /// </summary>
    /// <exception cref="ArgumentException">A block of <paramref name="droppable"/> cannot be dropped.</exception>
    public static MergedCosts Measure(ModelConfig config, int inputSize, IEnumerable<int> blocks, IEnumerable<int>? droppable = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(blocks);
        var indices = blocks.Distinct().ToList();
        var dropIndices = (droppable ?? []).Distinct().ToList();
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(config);
        var original = ModelProfiler.Profile(model, inputSize);
        foreach (var index in indices)
        {
            model.Prune(index).Lambda = 1;
        }
        Merger.MergeAll(model, [randn(2, config.InChans, inputSize, inputSize, generator: new Generator(0))]);
        var merged = ModelProfiler.Profile(model, inputSize);
        var dropSavings = new Dictionary<int, ModelCost>();
        if (dropIndices.Count > 0)
        {
            using var dropModel = ModelRegistry.Create(config);
            foreach (var index in dropIndices)
            {
                dropModel.Drop(index);
            }
            var dropped = ModelProfiler.Profile(dropModel, inputSize);
            dropSavings = dropIndices.ToDictionary(i => i, i => new ModelCost(
                original.Blocks[i].Params - dropped.Blocks[i].Params,
                original.Blocks[i].Macs - dropped.Blocks[i].Macs));
        }
        return new MergedCosts(
            new ModelCost(original.Params, original.Macs),
            indices.ToDictionary(i => i, i => new ModelCost(
                original.Blocks[i].Params - merged.Blocks[i].Params,
                original.Blocks[i].Macs - merged.Blocks[i].Macs)),
            dropSavings);
    }

    /// <summary>The cost with the blocks of <paramref name="assignment"/> merged or dropped and every other block original.</summary>
    /// <exception cref="ArgumentException">A merged block is not one of <see cref="Blocks"/>, or a dropped one not of <see cref="DroppableBlocks"/>.</exception>
    public ModelCost Of(BlockAssignment assignment)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        var cost = Of(assignment.Merged);
        long parameters = cost.Params, macs = cost.Macs;
        foreach (var index in assignment.Dropped)
        {
            var saving = _dropSavings.TryGetValue(index, out var s)
                ? s
                : throw new ArgumentException($"block {index} is not among the measured droppable candidates", nameof(assignment));
            parameters -= saving.Params;
            macs -= saving.Macs;
        }
        return new ModelCost(parameters, macs);
    }

    /// <summary>The cost with the blocks of <paramref name="merged"/> merged and every other block original.</summary>
    /// <exception cref="ArgumentException">A block is not one of <see cref="Blocks"/>.</exception>
    public ModelCost Of(IEnumerable<int> merged)
    {
        ArgumentNullException.ThrowIfNull(merged);
        long parameters = Original.Params, macs = Original.Macs;
        foreach (var index in merged.Distinct())
        {
            var saving = _savings.TryGetValue(index, out var s)
                ? s
                : throw new ArgumentException($"block {index} is not among the measured candidates", nameof(merged));
            parameters -= saving.Params;
            macs -= saving.Macs;
        }
        return new ModelCost(parameters, macs);
    }
}
