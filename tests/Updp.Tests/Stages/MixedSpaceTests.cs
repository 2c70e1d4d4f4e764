using Updp.Benchmarks;
using Updp.Models;
using Updp.Pruning;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Tests.Stages;

/// <summary>
/// The mixed space (docs/METHOD.md#mixed): which assignments the supernet draws and the search
/// scores, their costs and predicted latency, against drop legality as the block rules give it.
/// </summary>
public class MixedSpaceTests
{
    /// <summary>MobileNetV2's droppable blocks, read from the rules of a real model: the residual ones.</summary>
    private static IReadOnlySet<int> MobileNetDroppable()
    {
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("mobilenetv2_050"));
        return BlockAssignment.Droppable(model, Enumerable.Range(0, 17));
    }

    // Distinct values per block and form, so that the best assignment is unique.
    private static double Additive(BlockAssignment a) =>
        a.Merged.Sum(b => Math.Sin(b * 1.7) + 0.01 * b) + a.Dropped.Sum(b => Math.Cos(b * 1.3) + 0.02 * b);

    [Fact]
    public void TheRulesAllowDroppingOnlyMobileNetsResidualBlocks()
    {
        Assert.Equal([2, 4, 5, 7, 8, 9, 11, 12, 14, 15], MobileNetDroppable().Order());
    }

    [Fact]
    public void SupernetStepsChangeAtMostKMaxBlocksAndDropOnlyDroppableOnes()
    {
        var droppable = MobileNetDroppable();
        var sampler = new SupernetSampler(Enumerable.Range(0, 17), maxPruned: 5, seed: 4, droppable);
        var merge = new SupernetSampler(Enumerable.Range(0, 17), maxPruned: 5, seed: 4);
        var dropsPerBlock = new int[17];
        var mergesPerBlock = new int[17];
        for (var step = 0; step < 1000; step++)
        {
            var a = sampler.SampleAssignment(step);
            Assert.InRange(a.Blocks.Count, 0, 5);
            Assert.All(a.Dropped, b => Assert.Contains(b, droppable));
            Assert.Empty(a.Merged.Intersect(a.Dropped));
            // The same blocks change as in the merge-only supernet of that seed; only their forms are drawn on top.
            Assert.Equal(merge.Sample(step), a.Blocks);
            a.Dropped.ToList().ForEach(b => dropsPerBlock[b]++);
            a.Merged.ToList().ForEach(b => mergesPerBlock[b]++);
        }
        // Each droppable block is dropped about as often as it is merged (a fair coin), the others never.
        foreach (var b in Enumerable.Range(0, 17))
        {
            if (droppable.Contains(b))
            {
                var n = dropsPerBlock[b] + mergesPerBlock[b];
                Assert.InRange(dropsPerBlock[b], (0.5 * n) - (4 * Math.Sqrt(n) / 2), (0.5 * n) + (4 * Math.Sqrt(n) / 2));
            }
            else
            {
                Assert.Equal(0, dropsPerBlock[b]);
                Assert.True(mergesPerBlock[b] > 0);
            }
        }
        // Seeded per step: a resumed run draws what an uninterrupted one would.
        var again = new SupernetSampler(Enumerable.Range(0, 17), 5, 4, droppable);
        Assert.Equal(sampler.SampleAssignment(377), again.SampleAssignment(377));
        Assert.NotEqual(Enumerable.Range(0, 50).Select(s => sampler.SampleAssignment(s).Key),
            Enumerable.Range(0, 50).Select(s => new SupernetSampler(Enumerable.Range(0, 17), 5, 5, droppable).SampleAssignment(s).Key));
        Assert.Throws<ArgumentException>(() => new SupernetSampler([1, 2, 3], 2, 0, [4]));
    }

    [Theory]
    [InlineData(6, 2, 2)]
    [InlineData(6, 0, 3)]
    [InlineData(5, 5, 3)]
    [InlineData(7, 4, 3)]
    public void ExhaustiveSearchScoresEveryLegalAssignmentOnce(int n, int d, int k)
    {
        var candidates = Enumerable.Range(10, n).ToList();
        var droppable = candidates.Take(d).ToHashSet();
        var calls = new List<string>();

        var result = SubnetSearch.ExploreAssignments(candidates, droppable, k, new SearchStrategy(), a =>
        {
            calls.Add(a.Key);
            return Additive(a);
        });

        // Every K-subset, each of its droppable blocks merged or dropped: counted by brute force.
        var expected = SubnetSearch.Binomial(n, k) == 0 ? 0 : Subsets(candidates, k).Sum(s => 1L << s.Count(droppable.Contains));
        Assert.Equal("exhaustive", result.Method);
        Assert.Equal(expected, result.Assignments);
        Assert.Equal(expected, SubnetSearch.AssignmentCount(n, d, k));
        Assert.Equal(expected, calls.Count);
        Assert.Equal(expected, calls.Distinct().Count());
        Assert.All(result.Scored, s =>
        {
            Assert.Equal(k, s.Assignment.Blocks.Count);
            Assert.All(s.Assignment.Dropped, b => Assert.Contains(b, droppable));
            Assert.All(s.Assignment.Blocks, b => Assert.Contains(b, candidates));
        });
    }

    private static IEnumerable<int[]> Subsets(IReadOnlyList<int> pool, int k) => k == 0
        ? [[]]
        : pool.SelectMany((b, i) => Subsets(pool.Skip(i + 1).ToList(), k - 1).Select(rest => (int[])[b, .. rest]));

    [Fact]
    public void EvolutionaryScoresOnlyLegalFeasibleAssignmentsWithinItsBudget()
    {
        var strategy = new SearchStrategy { Population = 10, Generations = 6, Seed = 3 };
        var candidates = Enumerable.Range(0, 17).ToList();
        var droppable = MobileNetDroppable();
        // At most two drops: a constraint that mutation and crossover often break.
        static bool AtMostTwoDrops(BlockAssignment a) => a.Dropped.Count <= 2;

        var result = SubnetSearch.ExploreAssignments(candidates, [.. droppable], 4, strategy, Additive, AtMostTwoDrops);

        Assert.Equal("evolutionary", result.Method);
        Assert.Equal(SubnetSearch.AssignmentCount(17, 10, 4), result.Assignments);
        Assert.InRange(result.Scored.Count, strategy.Population + 1, strategy.Population * (strategy.Generations + 1));
        Assert.Equal(result.Scored.Count, result.Scored.Select(s => s.Assignment.Key).Distinct().Count());
        Assert.All(result.Scored, s =>
        {
            Assert.Equal(4, s.Assignment.Blocks.Count);
            Assert.All(s.Assignment.Dropped, b => Assert.Contains(b, droppable));
            Assert.True(AtMostTwoDrops(s.Assignment), s.Assignment.Key);
        });
        // Both forms are explored, and evolution improves on its random start.
        Assert.Contains(result.Scored, s => s.Assignment.Dropped.Count > 0);
        Assert.Contains(result.Scored, s => s.Assignment.Dropped.Count == 0);
        Assert.True(result.Scored.Max(s => s.Score) > result.Scored.Take(strategy.Population).Max(s => s.Score));

        var again = SubnetSearch.ExploreAssignments(candidates, [.. droppable], 4, strategy, Additive, AtMostTwoDrops);
        Assert.Equal(result.Scored.Select(s => s.Assignment.Key), again.Scored.Select(s => s.Assignment.Key));
        var other = SubnetSearch.ExploreAssignments(candidates, [.. droppable], 4, strategy with { Seed = 4 }, Additive, AtMostTwoDrops);
        Assert.NotEqual(result.Scored.Select(s => s.Assignment.Key), other.Scored.Select(s => s.Assignment.Key));
    }

    [Fact]
    public void ALatencyBudgetOnAFixedTableKeepsOnlyAssignmentsPredictedToFit()
    {
        // Merging saves 1, 2, 4 and 0.5 ms; dropping saves 3, 5 and 6 ms; block 2 cannot be dropped.
        var table = new BlockLatencyTable
        {
            Config = ModelConfig.SmallInput("convnext_atto"),
            Resolution = 32,
            Batch = 1,
            Threads = 1,
            Machine = "test",
            ModelMs = 50,
            HasDroppedForms = true,
            Blocks = [new(0, 7, 6, 4), new(1, 8, 6, 3), new(2, 9, 5), new(3, 7, 6.5, 1)],
        };
        Assert.Equal(50 - 1 - 4, table.Predict([0, 2], []), 9);
        Assert.Equal(50 - 4 - 3 - 6, table.Predict([2], [0, 3]), 9);
        Assert.Contains("block 2", Assert.Throws<ArgumentException>(() => table.Predict([], [2])).Message);
        // The fewest blocks for 41 ms: dropping 3 and 1 saves 11 ms where the best two merges save 6.
        Assert.Null(table.FewestBlocksFor(41, [0, 1, 2, 3]));
        Assert.Equal(2, table.FewestBlocksFor(41, [0, 1, 2, 3], orDrop: true));

        var budget = new LatencyBudget(table, 41);
        Assert.Equal(2, budget.FewestBlocks([0, 1, 2, 3], SearchSpace.Mixed));
        var scored = new List<BlockAssignment>();
        var result = SubnetSearch.ExploreAssignments([0, 1, 2, 3], [0, 1, 3], 2, new SearchStrategy(), a =>
        {
            scored.Add(a);
            return Additive(a);
        }, budget.Fits);

        Assert.NotEmpty(scored);
        Assert.All(scored, a => Assert.True(table.Predict(a.Merged, a.Dropped) <= 41, a.Key));
        // Exactly the pairs that save 9 ms or more: 0 and 3 dropped (9), 1 dropped with 2 merged (9), 1 and 3 dropped (11), 2 merged with 3 dropped (10).
        Assert.Equal(["0d,3d", "1d,2", "1d,3d", "2,3d"], scored.Select(a => a.Key).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void CostsOfAnAssignmentAreThoseOfTheModelBuiltWithItsForms()
    {
        using var scope = NewDisposeScope();
        var config = ModelConfig.SmallInput("resnet18");
        // Block 2 keeps its strided projection when dropped; block 5 drops to the identity.
        var assignment = new BlockAssignment([1, 6], [2, 5]);
        var costs = MergedCosts.Measure(config, 32, [0, 1, 2, 6], [2, 5]);

        using var model = ModelRegistry.Create(config);
        foreach (var i in assignment.Merged)
        {
            model.Prune(i).Lambda = 1;
        }
        foreach (var i in assignment.Dropped)
        {
            model.Drop(i);
        }
        Merger.MergeAll(model, [randn(2, 1, 32, 32)]);
        var profile = ModelProfiler.Profile(model, 32);

        Assert.Equal(new ModelCost(profile.Params, profile.Macs), costs.Of(assignment));
        // A merged BasicBlock costs more MACs than the original; its dropped form keeps only the projection.
        Assert.True(costs.Of(assignment).Macs < costs.Of(new BlockAssignment([1, 2, 6], [5])).Macs);
        Assert.Contains("block 6", Assert.Throws<ArgumentException>(() => costs.Of(new BlockAssignment([], [6]))).Message);
    }

    [Fact]
    public void StageThreeStartsAMixedAssignmentFromTheOriginalNetwork()
    {
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("mobilenetv2_050"));
        Tests.Pruning.PruningTestSupport.Randomize(model, 3);
        model.eval();
        var x = Tests.Pruning.PruningTestSupport.Input(5);
        using var _ = no_grad();
        var before = model.call(x);
        // A supernet has every block pruned; stage 3 keeps only the merged ones pruned.
        foreach (var b in model.Blocks)
        {
            model.Prune(b.Index).Lambda = 0.5;
        }

        var (pruned, fading) = ProgressiveFinetune.PrepareMixed(model, new BlockAssignment([0, 3], [4, 8]));

        Assert.Equal(2, pruned.Count);
        Assert.Equal(2, fading.Count);
        Assert.All(pruned, p => Assert.Equal(0, p.Lambda));
        Assert.All(fading, f => Assert.Equal(0, f.Lambda));
        Assert.All(model.Blocks, b => Assert.Equal(b.Index switch
        {
            0 or 3 => BlockForm.Pruned,
            4 or 8 => BlockForm.Fading,
            _ => BlockForm.Original,
        }, model.FormOf(b.Index)));
        Assert.True(Checkpoints.TestSupport.Identical(before, model.call(x)), "at λ = 0 the model is the original network");

        using var other = ModelRegistry.Create(ModelConfig.SmallInput("mobilenetv2_050"));
        var e = Assert.Throws<ArgumentException>(() => ProgressiveFinetune.PrepareMixed(other, new BlockAssignment([4], [3])));
        Assert.Contains("block 3 (features.4) cannot be dropped", e.Message);
    }

    [Fact]
    public void AnAssignmentRecordsAndReadsBackItsForms()
    {
        var a = new BlockAssignment([7, 1], [4]);
        Assert.Equal([1, 4, 7], a.Blocks);
        Assert.Equal("1,4d,7", a.Key);
        Assert.Equal("1, 7 merged; 4 dropped", a.ToString());
        Assert.Equal(a, BlockAssignment.FromForms(a.Blocks, a.Forms));
        Assert.Equal(BlockAssignment.MergeOnly([1, 4, 7]), BlockAssignment.FromForms([1, 4, 7], null));
        Assert.Throws<ArgumentException>(() => new BlockAssignment([1, 4], [4]));
        Assert.Throws<ArgumentException>(() => BlockAssignment.FromForms([1], new Dictionary<int, string> { [1] = "fold" }));
        Assert.Throws<ArgumentException>(() => BlockAssignment.FromForms([1], new Dictionary<int, string> { [2] = "drop" }));
    }
}
