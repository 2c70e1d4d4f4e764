using System.Globalization;
using Updp.Models;
using Updp.Pruning.Blocks;

namespace Updp.Pruning;

/// <summary>The block forms a supernet is trained for and a search chooses among (docs/METHOD.md#mixed).</summary>
public enum SearchSpace
{
    /// <summary>Every changed block is merged (UPDP; also what <c>direct</c> and <c>drop</c> fine-tune).</summary>
    Merge,

    /// <summary>Every changed block is merged or, where its rule allows it, dropped: the <c>mixed</c> method.</summary>
    Mixed,
}

/// <summary>
/// One point of the search space (docs/METHOD.md#mixed): the blocks that are merged and the blocks
/// that are dropped; every other block keeps its original form. Both lists are ascending and
/// disjoint; <see cref="Blocks"/> are the changed blocks, K of them.
/// </summary>
public sealed class BlockAssignment : IEquatable<BlockAssignment>
{
    /// <summary>The form names of search.json, metrics.json and the reports.</summary>
    public const string MergeForm = "merge";

    /// <inheritdoc cref="MergeForm"/>
    public const string DropForm = "drop";

    /// <exception cref="ArgumentException">A block is listed twice, or both merged and dropped.</exception>
    public BlockAssignment(IEnumerable<int> merged, IEnumerable<int> dropped)
    {
        ArgumentNullException.ThrowIfNull(merged);
        ArgumentNullException.ThrowIfNull(dropped);
        int[] m = [.. merged.Order()], d = [.. dropped.Order()];
        if (m.Concat(d).GroupBy(i => i).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw new ArgumentException($"block {twice.Key} is assigned more than one form");
        }
        Merged = m;
        Dropped = d;
        Blocks = [.. m.Concat(d).Order()];
    }

    /// <summary>Every block of <paramref name="blocks"/> merged: a point of the merge-only space.</summary>
    public static BlockAssignment MergeOnly(IEnumerable<int> blocks) => new(blocks, []);

    /// <summary>The assignment recorded as <paramref name="blocks"/> with their <paramref name="forms"/> (null: all merged), as search.json and metrics.json write it.</summary>
    /// <exception cref="ArgumentException">A form is not <see cref="MergeForm"/> or <see cref="DropForm"/>, or names a block not in <paramref name="blocks"/>.</exception>
    public static BlockAssignment FromForms(IReadOnlyList<int> blocks, IReadOnlyDictionary<int, string>? forms)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        if (forms is null)
        {
            return MergeOnly(blocks);
        }
        if (forms.Keys.FirstOrDefault(k => !blocks.Contains(k), -1) is var extra and >= 0)
        {
            throw new ArgumentException($"block {extra} has a form but is not among the changed blocks {string.Join(",", blocks)}");
        }
        if (forms.FirstOrDefault(f => f.Value is not (MergeForm or DropForm)) is { Value: { } bad } wrong)
        {
            throw new ArgumentException($"block {wrong.Key} has the form '{bad}'; expected {MergeForm} or {DropForm}");
        }
        return new(blocks.Where(b => forms.GetValueOrDefault(b, MergeForm) == MergeForm), blocks.Where(b => forms.GetValueOrDefault(b) == DropForm));
    }

    /// <summary>The merged blocks, ascending.</summary>
    public IReadOnlyList<int> Merged { get; }

    /// <summary>The dropped blocks, ascending.</summary>
    public IReadOnlyList<int> Dropped { get; }

    /// <summary>The changed blocks (merged or dropped), ascending.</summary>
    public IReadOnlyList<int> Blocks { get; }

    /// <summary>Each changed block's form, <see cref="MergeForm"/> or <see cref="DropForm"/>.</summary>
    public IReadOnlyDictionary<int, string> Forms => Blocks.ToDictionary(b => b, b => Dropped.Contains(b) ? DropForm : MergeForm);

    /// <summary>The blocks that can be dropped among <paramref name="blocks"/> of <paramref name="model"/>, as the rules say.</summary>
    public static IReadOnlySet<int> Droppable(ImageClassifier model, IEnumerable<int> blocks)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(blocks);
        return blocks.Where(i => model.CannotDrop(i) is null).ToHashSet();
    }

    /// <summary>"1, 7 merged; 4 dropped" (a side that is empty is left out; "nothing" when no block changes).</summary>
    public override string ToString()
    {
        var parts = new List<string>();
        if (Merged.Count > 0)
        {
            parts.Add($"{string.Join(", ", Merged)} merged");
        }
        if (Dropped.Count > 0)
        {
            parts.Add($"{string.Join(", ", Dropped)} dropped");
        }
        return parts.Count > 0 ? string.Join("; ", parts) : "nothing";
    }

    /// <summary>A compact key, e.g. <c>1,4d,7</c> (<c>d</c> marks a dropped block), for sets and logs.</summary>
    public string Key => string.Join(',', Blocks.Select(b => Dropped.Contains(b) ? b.ToString(CultureInfo.InvariantCulture) + "d" : b.ToString(CultureInfo.InvariantCulture)));

    public bool Equals(BlockAssignment? other) => other is not null && Merged.SequenceEqual(other.Merged) && Dropped.SequenceEqual(other.Dropped);

    public override bool Equals(object? obj) => Equals(obj as BlockAssignment);

    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Key);
}
