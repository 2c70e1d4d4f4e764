namespace Updp.Pruning;

/// <summary>
/// Draws the blocks that run pruned (λ=1) in one supernet training step: a size k uniform in
/// [0, K_max], then a uniform k-subset of the candidate blocks. The draw is a function of the seed
/// and the step alone, so a resumed run draws what an uninterrupted one would.
/// </summary>
public sealed class SupernetSampler
{
    private readonly int[] _blocks;

    /// <param name="blocks">The candidate blocks (global indices, distinct).</param>
    /// <param name="maxPruned">K_max, at most the number of candidates.</param>
    /// <param name="seed">Seed of every draw.</param>
    public SupernetSampler(IEnumerable<int> blocks, int maxPruned, int seed)
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
    }

    public IReadOnlyList<int> Blocks => _blocks;

    public int MaxPruned { get; }

    public int Seed { get; }

    /// <summary>The blocks pruned in step <paramref name="step"/>, in ascending order.</summary>
    public IReadOnlyList<int> Sample(long step)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        var random = new Random(StepSeed(Seed, step));
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
