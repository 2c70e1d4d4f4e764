namespace Updp.Pruning;

/// <summary>
/// Draws the blocks that run pruned (λ=1) in one supernet training step: a size k uniform in
/// [0, K_max], then a uniform k-subset of the candidate blocks. For the mixed space
/// (<see cref="SampleAssignment"/>, docs/METHOD.md#mixed) each drawn block that may be dropped is
/// then merged or dropped with probability ½ each. The draw is a function of the seed and the step
/// alone, so a resumed run draws what an uninterrupted one would.
/// </summary>
public sealed class SupernetSampler
{
    private readonly int[] _blocks;
    private readonly HashSet<int> _droppable;

    /// <param name="blocks">The candidate blocks (global indices, distinct).</param>
    /// <param name="maxPruned">K_max, at most the number of candidates.</param>
    /// <param name="seed">Seed of every draw.</param>
    /// <param name="droppable">The candidates whose rule allows dropping them (<see cref="SampleAssignment"/>); null or empty: none.</param>
    public SupernetSampler(IEnumerable<int> blocks, int maxPruned, int seed, IEnumerable<int>? droppable = null)
    {
        ArgumentNullException.ThrowIfNull(blocks);
        _blocks = [.. blocks.Order()];
        if (_blocks.Distinct().Count() != _blocks.Length)
        {
            throw new ArgumentException("the candidate blocks must be distinct", nameof(blocks));
        }
        if (maxPruned < 0 || maxPruned > _blocks.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(maxPruned), maxPruned, $"K_max must lie in [0, {_blocks.Length}], the number of candidate blocks");
        }
        MaxPruned = maxPruned;
        Seed = seed;
        _droppable = [.. droppable ?? []];
        if (_droppable.FirstOrDefault(b => !_blocks.Contains(b), -1) is var stray and >= 0)
        {
            throw new ArgumentException($"droppable block {stray} is not a candidate", nameof(droppable));
        }
    }

    public IReadOnlyList<int> Blocks => _blocks;

    /// <summary>The candidates that may be dropped.</summary>
    public IReadOnlySet<int> Droppable => _droppable;

    public int MaxPruned { get; }

    public int Seed { get; }

    /// <summary>The blocks pruned in step <paramref name="step"/>, in ascending order.</summary>
    public IReadOnlyList<int> Sample(long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        return Draw(new Random(StepSeed(Seed, step)));
    }

    /// <summary>
    /// The assignment of step <paramref name="step"/> in the mixed space: the blocks of
    /// <see cref="Sample"/> (the same ones), each droppable one then merged or dropped by a fair coin
    /// drawn in ascending block order; the others merged.
    /// </summary>
    public BlockAssignment SampleAssignment(long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        var random = new Random(StepSeed(Seed, step));
        var changed = Draw(random);
        var dropped = new List<int>();
        foreach (var block in changed)
        {
            if (_droppable.Contains(block) && random.Next(2) == 1)
            {
                dropped.Add(block);
            }
        }
        return new BlockAssignment(changed.Except(dropped), dropped);
    }

    private int[] Draw(Random random)
    {
        var count = random.Next(MaxPruned + 1);
        var order = (int[])_blocks.Clone();
        // The first `count` places of a partial Fisher–Yates shuffle: a uniform subset of that size.
        for (var i = 0; i < count; i++)
        {
            var j = random.Next(i, order.Length);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return [.. order.Take(count).Order()];
    }

    // SplitMix64's finaliser over (seed, step): nearby steps get unrelated System.Random seeds.
    private static int StepSeed(int seed, long step)
    {
        unchecked
        {
            var z = ((ulong)(uint)seed << 32) ^ (ulong)step;
            z += 0x9E3779B97F4A7C15;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
            z ^= z >> 31;
            return (int)(z & 0x7FFFFFFF);
        }
    }
}
