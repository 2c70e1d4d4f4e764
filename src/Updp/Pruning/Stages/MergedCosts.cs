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
/// the cost of a subset is the original cost minus the savings of its blocks.
/// </summary>
public sealed class MergedCosts
{
    private readonly Dictionary<int, ModelCost> _savings;

    private MergedCosts(ModelCost original, Dictionary<int, ModelCost> savings)
    {
        Original = original;
        _savings = savings;
    }

    /// <summary>The cost with every block original.</summary>
    public ModelCost Original { get; }

    /// <summary>The candidate blocks whose merged costs are known.</summary>
    public IReadOnlyCollection<int> Blocks => _savings.Keys;

    /// <summary>Profiles models of <paramref name="config"/> on <paramref name="inputSize"/>² inputs.</summary>
    public static MergedCosts Measure(ModelConfig config, int inputSize, IEnumerable<int> blocks)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(blocks);
        var indices = blocks.Distinct().ToList();
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(config);
        var original = ModelProfiler.Profile(model, inputSize);
        foreach (var index in indices)
        {
            model.Prune(index).Lambda = 1;
        }
        Merger.MergeAll(model, [randn(2, config.InChans, inputSize, inputSize, generator: new Generator(0))]);
        var merged = ModelProfiler.Profile(model, inputSize);
        return new MergedCosts(
            new ModelCost(original.Params, original.Macs),
            indices.ToDictionary(i => i, i => new ModelCost(
                original.Blocks[i].Params - merged.Blocks[i].Params,
                original.Blocks[i].Macs - merged.Blocks[i].Macs)));
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
