using Updp.Pruning;

namespace Updp.Tests.Stages;

/// <summary>The per-step choices of the stages: which blocks a supernet step prunes, and λ during fine-tuning.</summary>
public class StageScheduleTests
{
    [Fact]
    public void SupernetStepsPruneAtMostKMaxDistinctCandidates()
    {
        int[] candidates = [0, 2, 3, 5, 8, 9, 11];
        var sampler = new SupernetSampler(candidates, maxPruned: 3, seed: 4);
        var sizes = new int[4];
        for (var step = 0; step < 800; step++)
        {
            var subset = sampler.Sample(step);
            Assert.InRange(subset.Count, 0, 3);
            Assert.All(subset, b => Assert.Contains(b, candidates));
            Assert.Equal(subset.Order(), subset);
            Assert.Equal(subset.Count, subset.Distinct().Count());
            sizes[subset.Count]++;
        }
        // Sizes are uniform in [0, K_max]: 200 expected each; 4.5 standard deviations either side.
        Assert.All(sizes, n => Assert.InRange(n, 140, 260));
        // Every candidate gets pruned now and then.
        Assert.All(candidates, b => Assert.Contains(Enumerable.Range(0, 800), s => sampler.Sample(s).Contains(b)));
    }

    [Fact]
    public void SupernetSubsetsAreAFunctionOfSeedAndStep()
    {
        var a = new SupernetSampler(Enumerable.Range(0, 12), 6, seed: 1);
        var b = new SupernetSampler(Enumerable.Range(0, 12), 6, seed: 1);
        var c = new SupernetSampler(Enumerable.Range(0, 12), 6, seed: 2);
        var steps = Enumerable.Range(0, 50).Select(s => (long)s).ToList();
        Assert.Equal(steps.Select(s => a.Sample(s)), steps.Select(s => b.Sample(s)));
        // Drawing out of order (as a resumed run does) gives the same subsets.
        Assert.Equal(a.Sample(37), b.Sample(37));
        Assert.NotEqual(steps.Select(s => string.Join(',', a.Sample(s))), steps.Select(s => string.Join(',', c.Sample(s))));
    }

    [Fact]
    public void KMaxMustFitTheCandidates()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SupernetSampler([1, 2, 3], 4, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SupernetSampler([1, 2, 3], -1, 0));
        Assert.Throws<ArgumentException>(() => new SupernetSampler([1, 1, 3], 1, 0));
        Assert.Empty(new SupernetSampler([1, 2, 3], 0, 0).Sample(5));
    }

    [Fact]
    public void LambdaRisesLinearlyOverTheRampThenStaysOne()
    {
        var ramp = new LambdaRamp(0.5, 200);
        Assert.Equal(0, ramp.At(0));
        Assert.Equal(0.2, ramp.At(20), 12);
        Assert.Equal(0.5, ramp.At(50));
        Assert.Equal(0.99, ramp.At(99), 12);
        Assert.Equal(1, ramp.At(100));
        Assert.Equal(1, ramp.At(150));
        Assert.Equal(1, ramp.At(199));
        Assert.Equal(1, ramp.At(200));
        Assert.Equal(0.5, new LambdaRamp(1, 10).At(5));
        Assert.True(new LambdaRamp(1, 10).At(9) < 1);
        Assert.Equal(1, new LambdaRamp(1, 10).At(10));
    }

    [Fact]
    public void AZeroRampIsLambdaOneFromTheStart()
    {
        Assert.Equal(1, new LambdaRamp(0, 100).At(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LambdaRamp(1.5, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LambdaRamp(-0.1, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LambdaRamp(0.5, 0));
    }
}
