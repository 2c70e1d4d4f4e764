using Updp.Pruning;

namespace Updp.Tests.Stages;

/// <summary>How the subnet search walks the subsets, with synthetic scores instead of a supernet.</summary>
public class SearchExplorationTests
{
    // Distinct weights, so that the best subset is unique: the K heaviest candidates.
    private static double Additive(IReadOnlyList<int> subset) => subset.Sum(b => Math.Sin(b * 1.7) + 0.01 * b);

    [Fact]
    public void ExhaustiveSearchScoresEveryKSubsetOnce()
    {
        int[] candidates = [1, 3, 4, 6, 9, 10];
        var calls = new List<string>();

        var result = SubnetSearch.Explore(candidates, 2, new SearchStrategy(), s =>
        {
            calls.Add(string.Join(',', s));
            return Additive(s);
        });

        Assert.Equal("exhaustive", result.Method);
        Assert.Equal(15, result.Subsets);
        Assert.Equal(15, result.Scored.Count);
        Assert.Equal(15, calls.Distinct().Count());
        Assert.All(result.Scored, s =>
        {
            Assert.Equal(2, s.Blocks.Count);
            Assert.All(s.Blocks, b => Assert.Contains(b, candidates));
            Assert.True(s.Blocks[0] < s.Blocks[1]);
        });
    }

    [Fact]
    public void InfeasibleSubsetsAreNeverScored()
    {
        var scored = new List<IReadOnlyList<int>>();
        var result = SubnetSearch.Explore(Enumerable.Range(0, 6).ToList(), 2, new SearchStrategy(), s =>
        {
            scored.Add(s);
            return Additive(s);
        }, feasible: s => !s.Contains(0));

        // C(5,2) subsets avoid block 0.
        Assert.Equal(10, result.Scored.Count);
        Assert.Equal(10, scored.Count);
        Assert.DoesNotContain(scored, s => s.Contains(0));
    }

    [Fact]
    public void EvolutionaryScoresOnlyValidFeasibleKSubsetsWithinItsBudget()
    {
        var strategy = new SearchStrategy { Population = 10, Generations = 6, Seed = 3 };
        var candidates = Enumerable.Range(0, 12).ToList();
        // No two neighbouring blocks: a constraint that crossover and mutation often break.
        static bool Spread(IReadOnlyList<int> s) => s.Zip(s.Skip(1)).All(p => p.Second - p.First > 1);

        var result = SubnetSearch.Explore(candidates, 4, strategy, Additive, Spread);

        Assert.Equal("evolutionary", result.Method);
        Assert.Equal(495, result.Subsets);
        Assert.InRange(result.Scored.Count, strategy.Population + 1, strategy.Population * (strategy.Generations + 1));
        Assert.Equal(result.Scored.Count, result.Scored.Select(s => string.Join(',', s.Blocks)).Distinct().Count());
        Assert.All(result.Scored, s =>
        {
            Assert.Equal(4, s.Blocks.Count);
            Assert.Equal(s.Blocks.Order(), s.Blocks);
            Assert.Equal(4, s.Blocks.Distinct().Count());
            Assert.All(s.Blocks, b => Assert.InRange(b, 0, 11));
            Assert.True(Spread(s.Blocks), string.Join(',', s.Blocks));
        });

        // Seeded: the same subsets in the same order.
        var again = SubnetSearch.Explore(candidates, 4, strategy, Additive, Spread);
        Assert.Equal(result.Scored.Select(s => string.Join(',', s.Blocks)), again.Scored.Select(s => string.Join(',', s.Blocks)));
        var other = SubnetSearch.Explore(candidates, 4, strategy with { Seed = 4 }, Additive, Spread);
        Assert.NotEqual(result.Scored.Select(s => string.Join(',', s.Blocks)), other.Scored.Select(s => string.Join(',', s.Blocks)));
    }

    [Fact]
    public void EvolutionImprovesOnItsFirstGeneration()
    {
        var strategy = new SearchStrategy { Population = 8, Generations = 8, Seed = 5 };
        var candidates = Enumerable.Range(0, 16).ToList();
        var all = SubnetSearchCombinations(candidates, 5).Select(Additive).OrderDescending().ToList();

        var result = SubnetSearch.Explore(candidates, 5, strategy, Additive);

        var initial = result.Scored.Take(strategy.Population).Max(s => s.Score);
        var best = result.Scored.Max(s => s.Score);
        Assert.True(best > initial, $"best {best} after evolution, {initial} in the first population");
        // 72 of 4368 subsets scored; the best of them ranks among the very best of all.
        var rank = all.Count(v => v > best + 1e-12);
        Assert.True(rank < 5, $"the best subset found ranks {rank + 1} of {all.Count}");
    }

    [Fact]
    public void SmallSearchSpacesAreExhaustiveUnlessTheLimitSaysOtherwise()
    {
        var candidates = Enumerable.Range(0, 12).ToList();
        // C(12,2) = 66 ≤ 16·(8+1) = 144, the default limit.
        Assert.Equal("exhaustive", SubnetSearch.Explore(candidates, 2, new SearchStrategy(), Additive).Method);
        var limited = SubnetSearch.Explore(candidates, 2, new SearchStrategy { ExhaustiveLimit = 50 }, Additive);
        Assert.Equal("evolutionary", limited.Method);
        Assert.All(limited.Scored, s => Assert.Equal(2, s.Blocks.Count));
        // K = 0 and K = n have one subset each.
        Assert.Equal([[]], SubnetSearch.Explore(candidates, 0, new SearchStrategy(), Additive).Scored.Select(s => s.Blocks));
        Assert.Equal(candidates, SubnetSearch.Explore(candidates, 12, new SearchStrategy(), Additive).Scored.Single().Blocks);
    }

    [Fact]
    public void ImpossibleSearchesFailClearly()
    {
        var candidates = Enumerable.Range(0, 5).ToList();
        Assert.Throws<ArgumentOutOfRangeException>(() => SubnetSearch.Explore(candidates, 6, new SearchStrategy(), Additive));
        Assert.Throws<ArgumentException>(() => SubnetSearch.Explore([1, 1, 2], 1, new SearchStrategy(), Additive));
        Assert.Throws<InvalidOperationException>(() => SubnetSearch.Explore(candidates, 2, new SearchStrategy(), Additive, _ => false));
        Assert.Throws<InvalidOperationException>(() =>
            SubnetSearch.Explore(Enumerable.Range(0, 20).ToList(), 5, new SearchStrategy { Population = 4 }, Additive, _ => false));
    }

    [Fact]
    public void BinomialCountsSubsets()
    {
        Assert.Equal(66, SubnetSearch.Binomial(12, 2));
        Assert.Equal(924, SubnetSearch.Binomial(12, 6));
        Assert.Equal(1, SubnetSearch.Binomial(5, 0));
        Assert.Equal(0, SubnetSearch.Binomial(5, 6));
        Assert.Equal(long.MaxValue, SubnetSearch.Binomial(100, 50));
    }

    private static IEnumerable<int[]> SubnetSearchCombinations(IReadOnlyList<int> pool, int k) => SubnetSearch.Combinations([.. pool], k);
}
