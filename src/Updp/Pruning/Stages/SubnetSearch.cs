using System.Diagnostics;
using System.Text.Json.Serialization;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>
/// How <see cref="SubnetSearch"/> explores the subsets: every one when there are at most
/// <see cref="ExhaustiveLimit"/>, otherwise an evolutionary search. Evolution: an initial population
/// of <see cref="Population"/> random subsets; then <see cref="Generations"/> times, the better half
/// of the population breeds up to <see cref="Population"/> new subsets, each by mutation (swap one
/// pruned block for an unpruned candidate) or, with probability 1/2, crossover (the union of two
/// parents' blocks, of which K are sampled), and the best <see cref="Population"/> of parents and
/// children survive. Every subset is scored once, so at most Population·(Generations+1) are scored.
/// Everything random derives from <see cref="Seed"/>.
/// </summary>
public sealed record SearchStrategy
{
    public int Seed { get; init; }

    public int Population { get; init; } = 16;

    public int Generations { get; init; } = 8;

    /// <summary>Score every subset when there are at most this many; null means Population·(Generations+1), what evolution may score.</summary>
    public long? ExhaustiveLimit { get; init; }

    /// <summary>The exhaustive limit in force.</summary>
    [JsonIgnore]
    public long EffectiveExhaustiveLimit => ExhaustiveLimit ?? ((long)Population * (Generations + 1));

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(Population, 2, nameof(Population));
        ArgumentOutOfRangeException.ThrowIfNegative(Generations, nameof(Generations));
        ArgumentOutOfRangeException.ThrowIfNegative(EffectiveExhaustiveLimit, nameof(ExhaustiveLimit));
    }
}

/// <summary>What stage 2, subnet search, needs (<c>updp search</c>).</summary>
public sealed record SearchOptions
{
    /// <summary>
    /// The supernet (stage 1's <c>supernet.safetensors</c>); a baseline works too (its candidate
    /// blocks are pruned first). No block may be merged or dropped.
    /// </summary>
    public required string Checkpoint { get; init; }

    /// <summary>Data, split, calibration and evaluation settings shared with the other stages (the search ignores the train limit: it calibrates on the whole training split).</summary>
    public required StageSettings Settings { get; init; }

    /// <summary>K: how many blocks each candidate subset prunes.</summary>
    public required int Blocks { get; init; }

    /// <summary>Where <c>search.json</c> goes (the directory is locked while the search runs, <see cref="RunLock"/>); null writes nothing.</summary>
    public string? OutDir { get; init; }

    /// <summary>The blocks that may be pruned; null for every block of the model.</summary>
    public IReadOnlyList<int>? Candidates { get; init; }

    /// <summary>
    /// A constraint on subsets (blocks in ascending order), e.g. a latency budget; subsets it rejects
    /// are never scored. Null accepts every subset.
    /// </summary>
    public Func<IReadOnlyList<int>, bool>? Feasible { get; init; }

    /// <summary>A latency budget: only subsets predicted to fit are scored; the best is measured again.</summary>
    public LatencyBudget? Latency { get; init; }

    public SearchStrategy Strategy { get; init; } = new();

    /// <summary>Score on the first N validation images only (faster, noisier); null for the whole split.</summary>
    public int? ValidationLimit { get; init; }
}

/// <summary>One scored subset.</summary>
/// <param name="Blocks">The pruned blocks, ascending.</param>
/// <param name="ValTop1">Validation top-1 of the supernet with these blocks at λ=1, the rest at λ=0, after BN recalibration.</param>
/// <param name="Params">Parameters of the model with these blocks merged.</param>
/// <param name="Macs">MACs of the model with these blocks merged.</param>
/// <param name="LatencyMs">Predicted latency of the merged model (latency-constrained searches only).</param>
public sealed record SearchCandidate(IReadOnlyList<int> Blocks, double ValTop1, long Params, long Macs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? LatencyMs = null);

/// <summary>A progress report after each scored subset.</summary>
/// <param name="Scored">Subsets scored so far.</param>
/// <param name="Budget">The most the search will score.</param>
public sealed record SearchProgress(int Scored, long Budget, IReadOnlyList<int> Blocks, double ValTop1, double BestValTop1);

/// <summary>What the search found; written to <c>search.json</c>.</summary>
public sealed record SearchResult
{
    public required string Checkpoint { get; init; }

    public required string Model { get; init; }

    /// <summary>K.</summary>
    public int PrunedBlocks { get; init; }

    /// <summary>The blocks subsets were drawn from.</summary>
    public required IReadOnlyList<int> CandidateBlocks { get; init; }

    /// <summary><c>exhaustive</c> or <c>evolutionary</c>.</summary>
    public required string Method { get; init; }

    public required SearchStrategy Strategy { get; init; }

    /// <summary>C(n, K), saturated at <see cref="long.MaxValue"/>.</summary>
    public long Subsets { get; init; }

    /// <summary>Subsets scored (feasible ones only).</summary>
    public int Scored { get; init; }

    public bool Constrained { get; init; }

    /// <summary>The latency budget, the best subset's predicted and re-measured latency; null without a budget.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public LatencyReport? Latency { get; init; }

    public int CalibrationBatches { get; init; }

    public int CalibrationBatchSize { get; init; }

    public int ValidationImages { get; init; }

    public required ValidationSplit Split { get; init; }

    public int InputSize { get; init; }

    /// <summary>The unpruned model's cost.</summary>
    public required ModelCost Original { get; init; }

    public double Seconds { get; init; }

    /// <summary>Every scored subset, best first (validation top-1, then fewer MACs, then block order).</summary>
    public required IReadOnlyList<SearchCandidate> Candidates { get; init; }
}

/// <summary>
/// Stage 2 of the method (docs/METHOD.md#stage-2-subnet-search): which K blocks to prune. Each candidate subset S is scored by
/// the supernet's validation top-1 with S at λ=1 and the other candidates at λ=0, after every batch
/// norm's statistics are recalibrated on the same training batches (so a score depends on S alone,
/// not on the order of scoring). Only the validation split is used, never the test set.
/// </summary>
public static class SubnetSearch
{
    /// <summary>The file the search writes in its output directory.</summary>
    public const string ResultFile = "search.json";

    /// <summary>Runs the search and, with an output directory, writes <c>search.json</c> there (atomically).</summary>
    public static SearchResult Run(SearchOptions options, IProgress<SearchProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Strategy.Validate();
        using var context = PruneContext.Open(options.Checkpoint, options.Settings, options.Strategy.Seed);
        return Run(context, options, progress, cancellation);
    }

    /// <summary>
    /// The search on a loaded context (data, split and calibration images are the context's); the
    /// supernet is <paramref name="options"/>' checkpoint, the context's own or one of the same model.
    /// </summary>
    public static SearchResult Run(PruneContext context, SearchOptions options, IProgress<SearchProgress>? progress = null, CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(options);
        options.Strategy.Validate();
        var clock = Stopwatch.StartNew();
        var (model, candidates) = Supernet(context, options);
        using var _ = model;
        var data = context.Data;
        var validation = options.ValidationLimit is int limit ? data.Splits.Validation.Take(limit) : data.Splits.Validation;
        if (validation.Count == 0)
        {
            throw new ArgumentException("the search needs validation images; the validation split is empty");
        }
        // Another process's search.json cannot replace this one's, nor land in a run directory in use.
        using var runLock = options.OutDir is { } dir ? RunLock.Acquire(dir, "updp search") : null;
        var inputSize = data.Preprocessing.InputSize;
        var costs = MergedCosts.Measure(model.Config, inputSize, candidates);

        var calibration = context.CalibrationImages(options.Strategy.Seed, limited: false);
        var valBatches = TrainingRun.EvalLoader(validation, data.Preprocessing, context.Settings.EvalBatchSize, Devices.Of(model)).Epoch(0)
            .Select(b => (Images: b.Images.DetachFromDisposeScope(), Labels: b.Labels.DetachFromDisposeScope())).ToList();
        try
        {
            var feasible = options.Latency is { } latency
                ? (options.Feasible is { } given ? s => given(s) && latency.Fits(s) : latency.Fits)
                : options.Feasible;
            var exploration = Explore(candidates, options.Blocks, options.Strategy,
                Scorer(model, candidates, options, calibration, valBatches, progress, cancellation), feasible);
            var ranked = RankCandidates(exploration, costs, options.Latency);
            var result = new SearchResult
            {
                Checkpoint = options.Checkpoint,
                Model = model.Config.Name,
                PrunedBlocks = options.Blocks,
                CandidateBlocks = candidates,
                Method = exploration.Method,
                Strategy = options.Strategy with { ExhaustiveLimit = options.Strategy.EffectiveExhaustiveLimit },
                Subsets = exploration.Subsets,
                Scored = ranked.Count,
                Constrained = feasible is not null,
                Latency = options.Latency is { } budget ? Remeasure(budget, ranked[0]) : null,
                CalibrationBatches = calibration.Count,
                CalibrationBatchSize = context.Settings.CalibrationBatchSize,
                ValidationImages = validation.Count,
                Split = data.Split,
                InputSize = inputSize,
                Original = costs.Original,
                Seconds = clock.Elapsed.TotalSeconds,
                Candidates = ranked,
            };
            if (options.OutDir is { } outDir)
            {
                RunDirectory.WriteJson(Path.Combine(outDir, ResultFile), result);
            }
            return result;
        }
        finally
        {
            StageData.DisposeAll(valBatches.SelectMany(b => new[] { b.Images, b.Labels }));
        }
    }

    // The supernet with its candidate blocks checked; pruned blocks outside the candidates run as their original form.
    private static (ImageClassifier Model, int[] Candidates) Supernet(PruneContext context, SearchOptions options)
    {
        var model = context.ModelOf(options.Checkpoint);
        try
        {
            var candidates = StageData.CheckBlocks(model, options.Candidates ?? model.Blocks.Select(b => b.Index), "the search's candidate blocks");
            StageData.RequireUnmerged(model, model.Blocks.Select(b => b.Index), options.Checkpoint);
            if (options.Blocks < 0 || options.Blocks > candidates.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(options), options.Blocks, $"K must lie in [0, {candidates.Length}], the number of candidate blocks");
            }
            StageData.SetLambdas(model, model.PrunedBlocks().Select(p => p.Block.Index).Except(candidates).ToList(), new HashSet<int>());
            return (model, candidates);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    // Scores a subset (ScoreSubset) and reports progress against the most the search will score.
    private static Func<IReadOnlyList<int>, double> Scorer(ImageClassifier model, int[] candidates, SearchOptions options, IReadOnlyList<Tensor> calibration,
        IReadOnlyList<(Tensor Images, Tensor Labels)> validation, IProgress<SearchProgress>? progress, CancellationToken cancellation)
    {
        var subsets = Binomial(candidates.Length, options.Blocks);
        var budget = subsets <= options.Strategy.EffectiveExhaustiveLimit
            ? subsets
            : Math.Min(subsets, (long)options.Strategy.Population * (options.Strategy.Generations + 1));
        var best = double.NegativeInfinity;
        var scoredCount = 0;
        return subset =>
        {
            cancellation.ThrowIfCancellationRequested();
            var top1 = ScoreSubset(model, candidates, subset, calibration, validation);
            best = Math.Max(best, top1);
            progress?.Report(new SearchProgress(++scoredCount, budget, subset, top1, best));
            return top1;
        };
    }

    // Every scored subset with its merged cost (and predicted latency), best first: validation top-1, then fewer MACs, then block order.
    private static List<SearchCandidate> RankCandidates(Exploration exploration, MergedCosts costs, LatencyBudget? latency) =>
        exploration.Scored
            .Select(s =>
            {
                var cost = costs.Of(s.Blocks);
                return new SearchCandidate(s.Blocks, s.Score, cost.Params, cost.Macs, latency?.Table.Predict(s.Blocks));
            })
            .OrderByDescending(c => c.ValTop1).ThenBy(c => c.Macs).ThenBy(c => c.Blocks, SubsetOrder.Instance)
            .ToList();

    // The best subset's merged model timed again against the unpruned one, next to the table's prediction.
    private static LatencyReport Remeasure(LatencyBudget budget, SearchCandidate best)
    {
        var (baselineMs, mergedMs) = budget.Remeasure(best.Blocks);
        return new LatencyReport(budget.BudgetMs, budget.Table.Batch, budget.Table.Resolution, budget.Table.Threads, budget.TablePath,
            budget.Table.ModelMs, best.LatencyMs!.Value, mergedMs, baselineMs);
    }

    /// <summary>
    /// The score of one subset: every block of <paramref name="candidates"/> goes to its progressive
    /// form, at λ=1 if it is in <paramref name="subset"/> and λ=0 otherwise; every batch norm the
    /// calibration images reach is recalibrated on them; then top-1 on the validation batches.
    /// </summary>
    public static double ScoreSubset(ImageClassifier model, IEnumerable<int> candidates, IReadOnlyCollection<int> subset,
        IReadOnlyList<Tensor> calibration, IReadOnlyList<(Tensor Images, Tensor Labels)> validation)
    {
        ArgumentNullException.ThrowIfNull(model);
        StageData.SetLambdas(model, candidates, subset.ToHashSet());
        BatchNormCalibration.Recalibrate(model, calibration);
        var wasTraining = model.training;
        var device = Devices.Of(model);
        model.eval();
        try
        {
            using var noGrad = no_grad();
            long correct = 0, seen = 0;
            foreach (var (images, labels) in validation)
            {
                using var scope = NewDisposeScope();
                correct += model.call(images.OnDevice(device)).argmax(1).eq(labels.OnDevice(device)).sum().item<long>();
                seen += labels.shape[0];
            }
            return seen > 0 ? (double)correct / seen : throw new ArgumentException("no validation images", nameof(validation));
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    /// <summary>The outcome of <see cref="Explore"/>: the method used, C(n,K), and every scored subset in scoring order.</summary>
    public sealed record Exploration(string Method, long Subsets, IReadOnlyList<(IReadOnlyList<int> Blocks, double Score)> Scored);

    /// <summary>
    /// Explores the K-subsets of <paramref name="candidates"/> as <paramref name="strategy"/> says,
    /// scoring each feasible subset at most once (higher is better). Subsets are passed to
    /// <paramref name="score"/> and <paramref name="feasible"/> in ascending block order.
    /// </summary>
    /// <exception cref="InvalidOperationException">No feasible subset was found.</exception>
    public static Exploration Explore(IReadOnlyList<int> candidates, int k, SearchStrategy strategy,
        Func<IReadOnlyList<int>, double> score, Func<IReadOnlyList<int>, bool>? feasible = null)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentNullException.ThrowIfNull(strategy);
        ArgumentNullException.ThrowIfNull(score);
        strategy.Validate();
        int[] pool = [.. candidates.Distinct().Order()];
        if (pool.Length != candidates.Count)
        {
            throw new ArgumentException("the candidate blocks must be distinct", nameof(candidates));
        }
        if (k < 0 || k > pool.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(k), k, $"K must lie in [0, {pool.Length}], the number of candidate blocks");
        }
        var subsets = Binomial(pool.Length, k);
        var scored = new List<(IReadOnlyList<int> Blocks, double Score)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        bool TryScore(int[] subset, out double value)
        {
            value = double.NaN;
            if (!seen.Add(string.Join(',', subset)) || !(feasible?.Invoke(subset) ?? true))
            {
                return false;
            }
            value = score(subset);
            scored.Add((subset, value));
            return true;
        }

        if (subsets <= strategy.EffectiveExhaustiveLimit)
        {
            foreach (var subset in Combinations(pool, k))
            {
                TryScore(subset, out _);
            }
            return scored.Count > 0
                ? new Exploration("exhaustive", subsets, scored)
                : throw new InvalidOperationException($"none of the {subsets} subsets of {k} blocks is feasible");
        }

        Evolve(pool, k, strategy, subset => TryScore(subset, out var value) ? value : null);
        return new Exploration("evolutionary", subsets, scored);
    }

    // The evolutionary part of SearchStrategy: a random initial population, then generations of
    // children bred from the better half; tryScore returns null for a subset seen before or infeasible.
    private static void Evolve(int[] pool, int k, SearchStrategy strategy, Func<int[], double?> tryScore)
    {
        var random = new Random(strategy.Seed);
        // Attempts per phase before giving up on finding new feasible subsets.
        var maxAttempts = 50 * strategy.Population;
        var population = new List<(int[] Blocks, double Score)>();
        for (var attempt = 0; population.Count < strategy.Population && attempt < maxAttempts; attempt++)
        {
            var subset = Sample(pool, k, random);
            if (tryScore(subset) is double value)
            {
                population.Add((subset, value));
            }
        }
        if (population.Count == 0)
        {
            throw new InvalidOperationException($"no feasible subset of {k} blocks found in {maxAttempts} random draws");
        }
        for (var generation = 0; generation < strategy.Generations; generation++)
        {
            population = Rank(population);
            var parents = population.Take(Math.Max(2, (population.Count + 1) / 2)).Select(p => p.Blocks).ToList();
            var children = new List<(int[] Blocks, double Score)>();
            for (var attempt = 0; children.Count < strategy.Population && attempt < maxAttempts; attempt++)
            {
                var crossover = parents.Count >= 2 && random.NextDouble() < 0.5;
                int[] child;
                if (crossover)
                {
                    var a = random.Next(parents.Count);
                    var b = (a + 1 + random.Next(parents.Count - 1)) % parents.Count;
                    child = Crossover(parents[a], parents[b], k, random);
                }
                else
                {
                    child = Mutate(parents[random.Next(parents.Count)], pool, random);
                }
                if (tryScore(child) is double value)
                {
                    children.Add((child, value));
                }
            }
            population = Rank([.. population, .. children]).Take(strategy.Population).ToList();
        }
    }

    /// <summary>C(n, k), saturated at <see cref="long.MaxValue"/>.</summary>
    public static long Binomial(int n, int k)
    {
        if (k < 0 || k > n)
        {
            return 0;
        }
        k = Math.Min(k, n - k);
        var result = new System.Numerics.BigInteger(1);
        for (var i = 1; i <= k; i++)
        {
            result = result * (n - k + i) / i;
        }
        return result > long.MaxValue ? long.MaxValue : (long)result;
    }

    /// <summary>Every k-subset of <paramref name="pool"/> (ascending), in lexicographic order.</summary>
    internal static IEnumerable<int[]> Combinations(int[] pool, int k)
    {
        var index = Enumerable.Range(0, k).ToArray();
        while (true)
        {
            yield return [.. index.Select(i => pool[i])];
            var j = k - 1;
            while (j >= 0 && index[j] == pool.Length - k + j)
            {
                j--;
            }
            if (j < 0)
            {
                yield break;
            }
            index[j]++;
            for (var m = j + 1; m < k; m++)
            {
                index[m] = index[m - 1] + 1;
            }
        }
    }

    private static List<(int[] Blocks, double Score)> Rank(IEnumerable<(int[] Blocks, double Score)> scored) =>
        [.. scored.OrderByDescending(s => s.Score).ThenBy(s => s.Blocks, SubsetOrder.Instance)];

    // A uniform k-subset: the first k places of a partial Fisher–Yates shuffle.
    private static int[] Sample(IReadOnlyList<int> pool, int k, Random random)
    {
        var order = pool.ToArray();
        for (var i = 0; i < k; i++)
        {
            var j = random.Next(i, order.Length);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return [.. order.Take(k).Order()];
    }

    // Swaps one pruned block for an unpruned candidate (the same subset when there is none).
    private static int[] Mutate(int[] parent, int[] pool, Random random)
    {
        var outside = pool.Except(parent).ToArray();
        if (parent.Length == 0 || outside.Length == 0)
        {
            return parent;
        }
        var child = (int[])parent.Clone();
        child[random.Next(child.Length)] = outside[random.Next(outside.Length)];
        return [.. child.Order()];
    }

    // K blocks sampled uniformly from the union of both parents' blocks.
    private static int[] Crossover(int[] a, int[] b, int k, Random random) => Sample([.. a.Union(b).Order()], k, random);

    /// <summary>Lexicographic order of ascending block lists, for deterministic tie-breaks.</summary>
    private sealed class SubsetOrder : IComparer<IReadOnlyList<int>>
    {
        public static readonly SubsetOrder Instance = new();

        public int Compare(IReadOnlyList<int>? x, IReadOnlyList<int>? y)
        {
            ArgumentNullException.ThrowIfNull(x);
            ArgumentNullException.ThrowIfNull(y);
            for (var i = 0; i < Math.Min(x.Count, y.Count); i++)
            {
                var c = x[i].CompareTo(y[i]);
                if (c != 0)
                {
                    return c;
                }
            }
            return x.Count.CompareTo(y.Count);
        }
    }
}
