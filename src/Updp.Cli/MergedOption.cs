using System.CommandLine;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Cli;

/// <summary>
/// <c>--merged BLOCKS</c> of <c>info</c> and <c>bench</c>: the costs of a merged model without
/// training one. The blocks are pruned at λ=1 and merged (verified on random inputs); random weights
/// are fine for parameters, MACs and latency.
/// </summary>
internal static class MergedOption
{
    public static Option<string?> Create(string when) =>
        new("--merged") { Description = $"Prune these blocks (λ=1) and merge them, verified, {when}: e.g. 0,3,5 or all." };

    /// <summary>Merges the blocks <paramref name="blocks"/> names (null: none) and returns their indices.</summary>
    public static IReadOnlyList<int> Apply(ImageClassifier model, string? blocks, int resolution)
    {
        if (blocks is null)
        {
            return [];
        }
        var indices = blocks.Trim() == "all"
            ? model.Blocks.Select(b => b.Index).ToArray()
            : CommonOptions.ParseBlocks("--merged", blocks);
        foreach (var index in indices)
        {
            if (index < 0 || index >= model.Blocks.Count)
            {
                throw new ArgumentException($"--merged: block {index} is out of range; {model.Config.Name} has blocks 0–{model.Blocks.Count - 1}");
            }
            model.Prune(index).Lambda = 1;
        }
        using var scope = NewDisposeScope();
        var input = randn(2, model.Config.InChans, resolution, resolution, generator: new Generator(0));
        return Merger.MergeAll(model, [input]).MergedBlocks;
    }
}
