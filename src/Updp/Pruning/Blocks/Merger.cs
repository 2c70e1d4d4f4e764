using TorchSharp;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Pruning.Blocks;

/// <summary>The outcome of a verified merge.</summary>
/// <param name="MergedBlocks">Global indices of the blocks now in merged form.</param>
/// <param name="MaxAbsDiff">Largest |merged − unmerged| over all outputs compared.</param>
/// <param name="Tolerance">The bound it had to meet: <see cref="Merger.RelativeTolerance"/>·max(1, <paramref name="MaxAbsOutput"/>).</param>
/// <param name="MaxAbsOutput">Largest |y| of the unmerged model's outputs.</param>
/// <param name="Batches">Input batches compared (given plus random).</param>
public sealed record MergeReport(
    IReadOnlyList<int> MergedBlocks, double MaxAbsDiff, double Tolerance, double MaxAbsOutput, int Batches, long ParamsBefore, long ParamsAfter)
{
    /// <summary>Global indices of the fading blocks (λ=1) now in dropped form (docs/METHOD.md#progressive-drop).</summary>
    public IReadOnlyList<int> DroppedBlocks { get; init; } = [];
}

/// <summary>A merged model did not compute what the unmerged one did; the model was left unmerged.</summary>
public sealed class MergeVerificationException : Exception
{
    public MergeVerificationException(string message, double maxAbsDiff, double tolerance, IReadOnlyList<int> blocks) : base(message)
    {
        MaxAbsDiff = maxAbsDiff;
        Tolerance = tolerance;
        Blocks = blocks;
    }

    public double MaxAbsDiff { get; }

    public double Tolerance { get; }

    /// <summary>The blocks whose merge was attempted.</summary>
    public IReadOnlyList<int> Blocks { get; }
}

/// <summary>
/// Stage 4 of the method: every pruned block (λ=1) is replaced by its merged form and the result is
/// checked against the unmerged model, in eval mode, before anything can be exported.
/// </summary>
public static class Merger
{
    /// <summary>Merged and unmerged outputs must agree to this times max(1, max |y|).</summary>
    public const double RelativeTolerance = 1e-4;

    /// <summary>
    /// Merges every pruned block of <paramref name="model"/>, drops every fading one (its progressive
    /// drop done, docs/METHOD.md#progressive-drop), and verifies the result on
    /// <paramref name="inputs"/> (real images, say) plus <paramref name="randomBatches"/> batches of
    /// standard normal noise shaped like the first input: max |Δ| ≤ <see cref="RelativeTolerance"/>·max(1, max |y|).
    /// The model keeps its train/eval mode. On failure the pruned and fading blocks are put back and nothing changes.
    /// </summary>
    /// <exception cref="InvalidOperationException">A pruned or fading block has λ &lt; 1 (the message names it); nothing was changed.</exception>
    /// <exception cref="MergeVerificationException">The merged model's outputs differ by more than the tolerance.</exception>
    public static MergeReport MergeAll(ImageClassifier model, IEnumerable<Tensor> inputs, int randomBatches = 1, int seed = 0) =>
        MergeAll(model, inputs, randomBatches, seed, merge: null);

    /// <summary>
    /// Merges the chosen <paramref name="blocks"/> of a trained model without training: each block is
    /// put in its pruned form at λ = 1 (its activation removed, its norm a batch norm, docs/METHOD.md#block-forms),
    /// the batch norms that form adds get their running statistics from <paramref name="calibration"/>
    /// (<see cref="BatchNormCalibration"/>), and then every pruned block is merged and verified as by
    /// <see cref="MergeAll(ImageClassifier, IEnumerable{Tensor}, int, int)"/>, on the same batches.
    /// This is the model UPDP's fine-tuning (stage 3) starts from at λ = 1, so it is usually less
    /// accurate than the original: train the pruned model before merging (<c>updp finetune</c>, or
    /// <c>updp prune</c> for all four stages) when accuracy matters, and calibrate on real, preprocessed images.
    /// </summary>
    /// <param name="model">A model whose <paramref name="blocks"/> are in their original form; it keeps its train/eval mode.</param>
    /// <param name="blocks">Global block indices, as <see cref="ImageClassifier.Blocks"/> numbers them (<c>updp info</c> prints them).</param>
    /// <param name="calibration">Input batches [N, C, S, S] for the batch-norm statistics and the merge check.</param>
    /// <param name="randomBatches">Batches of noise the merge is checked on as well.</param>
    /// <param name="seed">Seed of that noise.</param>
    /// <returns>
    /// The merge's report, with <see cref="MergeReport.ParamsBefore"/> counted on the model as given
    /// (before pruning); <see cref="MergeReport.MergedBlocks"/> also lists blocks that were pruned at λ = 1 before.
    /// </returns>
    /// <exception cref="ArgumentException">No blocks or batches, a block listed twice, out of range or not in its original form, or another block pruned or fading with λ &lt; 1; nothing was changed.</exception>
    /// <exception cref="MergeVerificationException">The merged model's outputs differ from the pruned one's by more than the tolerance; the blocks are left pruned at λ = 1, unmerged.</exception>
    public static MergeReport PruneAndMerge(ImageClassifier model, IEnumerable<int> blocks, IReadOnlyList<Tensor> calibration, int randomBatches = 1, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(blocks);
        ArgumentNullException.ThrowIfNull(calibration);
        var chosen = blocks.ToList();
        if (chosen.Count == 0)
        {
            throw new ArgumentException("choose at least one block to merge", nameof(blocks));
        }
        if (calibration.Count == 0)
        {
            throw new ArgumentException("the batch-norm statistics and the merge check need at least one input batch", nameof(calibration));
        }
        foreach (var index in chosen)
        {
            if (index < 0 || index >= model.Blocks.Count)
            {
                throw new ArgumentException($"block index {index} is out of range: {model.Config.Name} has {model.Blocks.Count} prunable blocks (0–{model.Blocks.Count - 1})", nameof(blocks));
            }
            if (model.FormOf(index) != BlockForm.Original)
            {
                throw new ArgumentException($"{BlockPruning.Describe(model.Blocks[index])} is {model.FormOf(index).ToString().ToLowerInvariant()}, not original", nameof(blocks));
            }
        }
        if (chosen.GroupBy(i => i).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw new ArgumentException($"block {twice.Key} is listed more than once", nameof(blocks));
        }
        // Every pruned block gets merged and every fading one dropped, so one that is only partly so would fail after the change.
        if (model.PrunedBlocks().Where(p => p.Progressive.Lambda != 1).Select(p => p.Block).FirstOrDefault() is { } partial)
        {
            throw new ArgumentException(
                $"{BlockPruning.Describe(partial)} is pruned with λ = {((IProgressiveBlock)partial.Module).Lambda:G6}; only λ = 1 can be merged", nameof(model));
        }
        if (model.FadingBlocks().FirstOrDefault(f => f.Fading.Lambda != 1) is { Block: { } fading } half)
        {
            throw new ArgumentException(
                $"{BlockPruning.Describe(fading)} is fading with λ = {half.Fading.Lambda:G6}; only λ = 1 can be dropped", nameof(model));
        }
        var paramsBefore = ModelProfiler.CountParameters(model);
        var pruned = chosen.Select(index =>
        {
            var block = model.Prune(index);
            block.Lambda = 1;
            return block;
        }).ToList();
        BatchNormCalibration.Recalibrate(model, calibration, pruned.SelectMany(p => p.BatchNorms));
        return MergeAll(model, calibration, randomBatches, seed) with { ParamsBefore = paramsBefore };
    }

    /// <param name="merge">Replaces the rules' merge, so tests can inject a faulty one.</param>
    internal static MergeReport MergeAll(
        ImageClassifier model, IEnumerable<Tensor> inputs, int randomBatches, int seed, Func<nn.Module, nn.Module<Tensor, Tensor>>? merge)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentOutOfRangeException.ThrowIfNegative(randomBatches);
        var pruned = model.PrunedBlocks().ToList();
        var fading = model.FadingBlocks().ToList();
        var partial = pruned.Select(p => (p.Block, p.Progressive.Lambda)).Concat(fading.Select(f => (f.Block, f.Fading.Lambda)))
            .Where(p => p.Lambda != 1).ToList();
        if (partial.Count > 0)
        {
            throw new InvalidOperationException("only fully pruned blocks (λ = 1) can be merged and only fully faded ones dropped; " +
                string.Join(", ", partial.Select(p => $"{BlockPruning.Describe(p.Block)} has λ = {p.Lambda:G6}")));
        }
        var indices = pruned.Select(p => p.Block.Index).ToList();
        var dropped = fading.Select(f => f.Block.Index).ToList();
        var batches = inputs.ToList();
        if (batches.Count == 0)
        {
            throw new ArgumentException("the merge check needs at least one input batch", nameof(inputs));
        }

        var wasTraining = model.training;
        // Each replaced block with what it was; a merged module owns new tensors (disposed if put back), a dropped form shares the block's.
        var replaced = new List<(int Index, nn.Module<Tensor, Tensor> Before, bool Owned)>();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        try
        {
            model.eval();
            // Inputs go to the model's device; the noise is drawn on the CPU, so it is the same on every device.
            var device = Devices.Of(model);
            var generator = new Generator((ulong)seed);
            batches.AddRange(Enumerable.Range(0, randomBatches).Select(_ => randn(batches[0].shape, batches[0].dtype, generator: generator)));
            batches = batches.Select(x => x.OnDevice(device)).ToList();
            var expected = batches.Select(x => model.call(x)).ToList();
            var maxAbsOutput = MaxOrNaN(expected.Select(y => y.abs().max().item<float>()));
            var tolerance = RelativeTolerance * Math.Max(1, maxAbsOutput);
            var paramsBefore = ModelProfiler.CountParameters(model);

            foreach (var index in indices)
            {
                replaced.Add((index, model.Merge(index, merge), true));
            }
            foreach (var index in dropped)
            {
                replaced.Add((index, model.FinishFade(index), false));
            }
            var maxAbsDiff = MaxOrNaN(batches.Zip(expected, (x, y) => (model.call(x) - y).abs().max().item<float>()));
            // NaN fails too: the comparison is written so that only a finite, small difference passes.
            if (!(maxAbsDiff <= tolerance))
            {
                throw new MergeVerificationException(
                    $"merging blocks {string.Join(", ", indices)}{(dropped.Count > 0 ? $" and dropping {string.Join(", ", dropped)}" : "")} changed the outputs by up to {maxAbsDiff:G3}, more than the tolerance " +
                    $"{tolerance:G3} ({RelativeTolerance:G1}·max(1, max |y| = {maxAbsOutput:G3})) over {batches.Count} batches; the blocks were left unmerged",
                    maxAbsDiff, tolerance, indices);
            }
            replaced.Clear();
            return new MergeReport(indices, maxAbsDiff, tolerance, maxAbsOutput, batches.Count, paramsBefore, ModelProfiler.CountParameters(model))
            {
                DroppedBlocks = dropped,
            };
        }
        finally
        {
            // Put back what was replaced if anything failed; replaced is empty on success.
            for (var i = replaced.Count - 1; i >= 0; i--)
            {
                var current = model.ReplaceBlock(replaced[i].Index, replaced[i].Before);
                if (replaced[i].Owned)
                {
                    current.Dispose();
                }
            }
            model.train(wasTraining);
        }
    }

    // Enumerable.Max ranks NaN below every number; here a NaN anywhere must fail the check.
    private static double MaxOrNaN(IEnumerable<float> values)
    {
        var max = double.NegativeInfinity;
        foreach (var v in values)
        {
            if (float.IsNaN(v))
            {
                return double.NaN;
            }
            max = Math.Max(max, v);
        }
        return max;
    }
}
