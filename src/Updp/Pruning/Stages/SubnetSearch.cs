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

    /// <summary>K: how many blocks each candidate subset prunes (merges, or in the mixed space merges or drops).</summary>
    public required int Blocks { get; init; }

    /// <summary>
    /// What a changed block becomes: merged (<see cref="SearchSpace.Merge"/>, UPDP), or merged or
    /// dropped where its rule allows it (<see cref="SearchSpace.Mixed"/>, docs/METHOD.md#mixed).
    /// </summary>
    public SearchSpace Space { get; init; } = SearchSpace.Merge;

    /// <summary>Where <c>search.json</c> goes (the directory is locked while the search runs, <see cref="RunLock"/>); null writes nothing.</summary>
    public string? OutDir { get; init; }

    /// <summary>The blocks that may be pruned; null for every block of the model.</summary>
    public IReadOnlyList<int>? Candidates { get; init; }

    /// <summary>
    /// A constraint on subsets (the changed blocks in ascending order, whatever their forms), e.g. a
    /// latency budget; subsets it rejects are never scored. Null accepts every subset.
    /// </summary>
    public Func<IReadOnlyList<int>, bool>? Feasible { get; init; }

    /// <summary>A latency budget: only subsets predicted to fit are scored; the best is measured again.</summary>
    public LatencyBudget? Latency { get; init; }

    /// <summary>
    /// With <see cref="Latency"/>: how many scored candidates besides the best, drawn at random, are
    /// also built and timed whole to check the table's prediction (docs/METHOD.md#latency-budget).
    /// </summary>
    public int LatencyChecks { get; init; } = DefaultLatencyChecks;

    /// <summary>The default of <see cref="LatencyChecks"/>: a few, each costs one model built, exported (ONNX Runtime) and timed.</summary>
    public const int DefaultLatencyChecks = 3;

    public SearchStrategy Strategy { get; init; } = new();

    /// <summary>Score on the first N validation images only (faster, noisier); null for the whole split.</summary>
    public int? ValidationLimit { get; init; }
}

/// <summary>One scored subset (in the mixed space, one scored assignment).</summary>
/// <param name="Blocks">The pruned (merged or dropped) blocks, ascending.</param>
/// <param name="ValTop1">Validation top-1 of the supernet with these blocks at λ=1 (dropped ones in their dropped form), the rest at λ=0, after BN recalibration.</param>
/// <param name="Params">Parameters of the model with these blocks merged (or dropped).</param>
/// <param name="Macs">MACs of the model with these blocks merged (or dropped).</param>
/// <param name="LatencyMs">Predicted latency of the merged model (latency-constrained searches only).</param>
/// <param name="Forms">
/// Each block's form, <c>merge</c> or <c>drop</c> (<see cref="BlockAssignment.Forms"/>): written by
/// mixed searches only; without it every block is merged.
/// </param>
public sealed record SearchCandidate(IReadOnlyList<int> Blocks, double ValTop1, long Params, long Macs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? LatencyMs = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyDictionary<int, string>? Forms = null)
{
    /// <summary>The blocks with their forms.</summary>
    [JsonIgnore]
    public BlockAssignment Assignment => BlockAssignment.FromForms(Blocks, Forms);
}

/// <summary>A progress report after each scored subset.</summary>
/// <param name="Scored">Subsets scored so far.</param>
/// <param name="Budget">The most the search will score.</param>
/// <param name="Dropped">The blocks of <paramref name="Blocks"/> that are dropped (mixed searches); null when all are merged.</param>
public sealed record SearchProgress(int Scored, long Budget, IReadOnlyList<int> Blocks, double ValTop1, double BestValTop1, IReadOnlyList<int>? Dropped = null);

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

    /// <summary><c>mixed</c> for a search of the mixed space (docs/METHOD.md#mixed); null (not written) for the merge-only one.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Space { get; init; }

    /// <summary>The candidate blocks a mixed search may drop; null for the merge-only one.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<int>? DroppableBlocks { get; init; }

    public required SearchStrategy Strategy { get; init; }

    /// <summary>C(n, K), saturated at <see cref="long.MaxValue"/>; in the mixed space the number of assignments.</summary>
    public long Subsets { get; init; }

    /// <summary>Subsets scored (feasible ones only).</summary>
    public int Scored { get; init; }

    public bool Constrained { get; init; }

    /// <summary>
    /// The latency budget, the best subset's predicted and re-measured latency, and the prediction
    /// checked on a few more candidates; null without a budget.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public LatencyReport? Latency { get; init; }

    public int CalibrationBatches { get; init; }

    public int CalibrationBatchSize { get; init; }

    public int ValidationImages { get; init; }

    public required ValidationSplit Split { get; init; }

    public int InputSize { get; init; }

    /// <summary>The unpruned model's cost.</summary>
    public required ModelCost Original { get; init; }

    /// <summary>
    /// Validation top-1 of the supernet with no block changed (every candidate at λ=0, the unpruned
    /// network on the supernet's weights), scored as the candidates are: the same images, the same
    /// BN recalibration. Null (not written) in searches from before it was scored.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? UnprunedValTop1 { get; init; }

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
        ArgumentOutOfRangeException.ThrowIfNegative(options.LatencyChecks, nameof(options.LatencyChecks));
        var clock = Stopwatch.StartNew();
        var (model, candidates) = Supernet(context, options);
        using var _ = model;
        var data = context.Data;
        var validation = Validation(data, options);
        // Another process's search.json cannot replace this one's, nor land in a run directory in use.
        using var runLock = options.OutDir is { } dir ? RunLock.Acquire(dir, "updp search") : null;
        var inputSize = data.Preprocessing.InputSize;
        var mixed = options.Space == SearchSpace.Mixed;
        // The rules say which blocks may be dropped (docs/METHOD.md#which-blocks-can-be-dropped); only those get the drop form.
        int[] droppable = mixed ? [.. BlockAssignment.Droppable(model, candidates).Order()] : [];
        var costs = MergedCosts.Measure(model.Config, inputSize, candidates, droppable);

        var calibration = context.CalibrationImages(options.Strategy.Seed, limited: false);
        var valBatches = TrainingRun.EvalLoader(validation, data.Preprocessing, context.Settings.EvalBatchSize, Devices.Of(model)).Epoch(0)
            .Select(b => (Images: b.Images.DetachFromDisposeScope(), Labels: b.Labels.DetachFromDisposeScope())).ToList();
        try
        {
            var (exploration, constrained) = ExploreSpace(model, candidates, droppable, options, calibration, valBatches, progress, cancellation);
            var ranked = RankCandidates(exploration, costs, options.Latency, mixed);
            // The reference point of the search's figure: what pruning nothing scores on the same footing.
            // No block is swapped out after a mixed exploration, so the empty subset is the empty assignment too.
            var unpruned = ScoreSubset(model, candidates, [], calibration, valBatches);
            var result = new SearchResult
            {
                Checkpoint = options.Checkpoint,
                Model = model.Config.Name,
                PrunedBlocks = options.Blocks,
                CandidateBlocks = candidates,
                Method = exploration.Method,
                Space = mixed ? "mixed" : null,
                DroppableBlocks = mixed ? droppable : null,
                Strategy = options.Strategy with { ExhaustiveLimit = options.Strategy.EffectiveExhaustiveLimit },
                Subsets = exploration.Assignments,
                Scored = ranked.Count,
                Constrained = constrained,
                Latency = options.Latency?.Check(ranked[0].Assignment, [.. ranked.Select(c => c.Assignment)], options.LatencyChecks, options.Strategy.Seed),
                CalibrationBatches = calibration.Count,
                CalibrationBatchSize = context.Settings.CalibrationBatchSize,
                ValidationImages = validation.Count,
                Split = data.Split,
                InputSize = inputSize,
                Original = costs.Original,
                UnprunedValTop1 = unpruned,
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

    // The validation images the candidates are scored on (--val-limit of them, if given).
    private static Data.ImageDataset Validation(RunData data, SearchOptions options)
    {
        var validation = options.ValidationLimit is int limit ? data.Splits.Validation.Take(limit) : data.Splits.Validation;
        return validation.Count > 0 ? validation : throw new ArgumentException("the search needs validation images; the validation split is empty");
    }

    // Scores candidates in the search space: K-block subsets to merge, or with the mixed space assignments that also drop.
    // Returns whether a constraint (a latency budget, a feasibility test) limited them.
    private static (AssignmentExploration Exploration, bool Constrained) ExploreSpace(ImageClassifier model, int[] candidates, int[] droppable,
        SearchOptions options, IReadOnlyList<Tensor> calibration, List<(Tensor Images, Tensor Labels)> valBatches,
        IProgress<SearchProgress>? progress, CancellationToken cancellation)
    {
        if (options.Space != SearchSpace.Mixed)
        {
            var feasible = options.Latency is { } latency
                ? (options.Feasible is { } given ? s => given(s) && latency.Fits(s) : latency.Fits)
                : options.Feasible;
            var subsets = Explore(candidates, options.Blocks, options.Strategy,
                Scorer(model, candidates, options, calibration, valBatches, progress, cancellation), feasible,
                options.Latency?.Fastest(candidates, options.Blocks, []).Merged);
            return (new AssignmentExploration(subsets.Method, subsets.Subsets,
                [.. subsets.Scored.Select(s => (BlockAssignment.MergeOnly(s.Blocks), s.Score))]), feasible is not null);
        }
        else
        {
            Func<BlockAssignment, bool>? feasible = (options.Feasible, options.Latency) switch
            {
                (null, null) => null,
                (var given, var latency) => a => (given?.Invoke(a.Blocks) ?? true) && (latency?.Fits(a) ?? true),
            };
            var forms = new AssignmentForms(model, candidates, droppable);
            try
            {
                return (ExploreAssignments(candidates, droppable, options.Blocks, options.Strategy,
                    MixedScorer(model, forms, candidates.Length, droppable.Length, options, calibration, valBatches, progress, cancellation), feasible,
                    options.Latency?.Fastest(candidates, options.Blocks, droppable)), feasible is not null);
            }
            finally
            {
                forms.Restore();
            }
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
        IReadOnlyList<(Tensor Images, Tensor Labels)> validation, IProgress<SearchProgress>? progress, CancellationToken cancellation) =>
        Reporting<IReadOnlyList<int>>(Binomial(candidates.Length, options.Blocks), options, subset => ScoreSubset(model, candidates, subset, calibration, validation),
            (n, budget, subset, top1, best) => new SearchProgress(n, budget, subset, top1, best), progress, cancellation);

    // Scores an assignment (ScoreAssignment) and reports progress against the most the search will score.
    private static Func<BlockAssignment, double> MixedScorer(ImageClassifier model, AssignmentForms forms, int candidates, int droppable, SearchOptions options,
        IReadOnlyList<Tensor> calibration, IReadOnlyList<(Tensor Images, Tensor Labels)> validation, IProgress<SearchProgress>? progress, CancellationToken cancellation) =>
        Reporting<BlockAssignment>(AssignmentCount(candidates, droppable, options.Blocks), options, a => ScoreAssignment(model, forms, a, calibration, validation),
            (n, budget, a, top1, best) => new SearchProgress(n, budget, a.Blocks, top1, best, a.Dropped), progress, cancellation);

    // A scorer that checks for cancellation and reports each score, the best so far and how many of
    // at most `budget` (every candidate of a space of `space` when it is scored exhaustively) are done.
    private static Func<T, double> Reporting<T>(long space, SearchOptions options, Func<T, double> score,
        Func<int, long, T, double, double, SearchProgress> report, IProgress<SearchProgress>? progress, CancellationToken cancellation)
    {
        var budget = space <= options.Strategy.EffectiveExhaustiveLimit
            ? space
            : Math.Min(space, (long)options.Strategy.Population * (options.Strategy.Generations + 1));
        var best = double.NegativeInfinity;
        var scoredCount = 0;
        return candidate =>
        {
            cancellation.ThrowIfCancellationRequested();
            var top1 = score(candidate);
            best = Math.Max(best, top1);
            progress?.Report(report(++scoredCount, budget, candidate, top1, best));
            return top1;
        };
    }

    // Every scored assignment with its cost once merged and dropped (and predicted latency), best first:
    // validation top-1, then fewer MACs, then block order, then which blocks are dropped.
    private static List<SearchCandidate> RankCandidates(AssignmentExploration exploration, MergedCosts costs, LatencyBudget? latency, bool mixed) =>
        exploration.Scored
            .Select(s =>
            {
                var cost = costs.Of(s.Assignment);
                return new SearchCandidate(s.Assignment.Blocks, s.Score, cost.Params, cost.Macs, latency?.Table.Predict(s.Assignment.Merged, s.Assignment.Dropped),
                    mixed ? s.Assignment.Forms : null);
            })
            .OrderByDescending(c => c.ValTop1).ThenBy(c => c.Macs).ThenBy(c => c.Blocks, SubsetOrder.Instance)
            .ThenBy(c => c.Assignment.Dropped, SubsetOrder.Instance)
            .ToList();

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
        return Top1(model, validation);
    }

    // ScoreSubset in the mixed space: the candidates take the assignment's forms (dropped blocks
    // swapped for their dropped form), every batch norm is recalibrated, then top-1 on validation.
    private static double ScoreAssignment(ImageClassifier model, AssignmentForms forms, BlockAssignment assignment,
        IReadOnlyList<Tensor> calibration, IReadOnlyList<(Tensor Images, Tensor Labels)> validation)
    {
        forms.Apply(assignment);
        BatchNormCalibration.Recalibrate(model, calibration);
        return Top1(model, validation);
    }

    private static double Top1(ImageClassifier model, IReadOnlyList<(Tensor Images, Tensor Labels)> validation)
    {
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
    /// <param name="start">
    /// A subset the evolutionary search also scores when its random draws find fewer feasible ones
    /// than a population (the fastest one under a tight latency budget, whose few feasible subsets
    /// random draws rarely hit; docs/METHOD.md#latency-budget).
    /// </param>
    /// <exception cref="InvalidOperationException">No feasible subset was found.</exception>
    public static Exploration Explore(IReadOnlyList<int> candidates, int k, SearchStrategy strategy,
        Func<IReadOnlyList<int>, double> score, Func<IReadOnlyList<int>, bool>? feasible = null, IReadOnlyList<int>? start = null)
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

        Evolve(strategy, new Breeding<int[]>(
            random => Sample(pool, k, random),
            (parent, random) => Mutate(parent, pool, random),
            (x, y, random) => Crossover(x, y, k, random),
            SubsetOrder.Instance), subset => TryScore(subset, out var value) ? value : null, $"subset of {k} blocks",
            start is null ? null : [.. start.Order()]);
        return new Exploration("evolutionary", subsets, scored);
    }

    /// <summary>The outcome of <see cref="ExploreAssignments"/>: the method used, the number of assignments, and every scored one in scoring order.</summary>
    public sealed record AssignmentExploration(string Method, long Assignments, IReadOnlyList<(BlockAssignment Assignment, double Score)> Scored);

    /// <summary>
    /// Explores the mixed space (docs/METHOD.md#mixed): every assignment of K changed blocks among
    /// <paramref name="candidates"/>, each changed block merged or, if it is one of
    /// <paramref name="droppable"/>, merged or dropped. As <see cref="Explore"/> does for subsets:
    /// every assignment when there are at most the strategy's exhaustive limit (subsets in
    /// lexicographic order, within a subset the all-merged assignment first), otherwise evolution in
    /// which a new assignment draws each droppable block's form by a fair coin, a mutation either
    /// swaps a changed block for an unchanged candidate (of a random legal form) or, with probability
    /// ½ when the parent has a droppable block, flips the form of one, and a crossover keeps each of
    /// its K blocks in the form a parent gave it (a coin decides where the parents disagree). Each
    /// feasible assignment is scored at most once; everything random follows the strategy's seed.
    /// </summary>
    /// <param name="start">An assignment scored too when random draws find too few feasible ones (<see cref="Explore"/>).</param>
    /// <exception cref="InvalidOperationException">No feasible assignment was found.</exception>
    public static AssignmentExploration ExploreAssignments(IReadOnlyList<int> candidates, IReadOnlyCollection<int> droppable, int k, SearchStrategy strategy,
        Func<BlockAssignment, double> score, Func<BlockAssignment, bool>? feasible = null, BlockAssignment? start = null)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        ArgumentNullException.ThrowIfNull(droppable);
        ArgumentNullException.ThrowIfNull(strategy);
        ArgumentNullException.ThrowIfNull(score);
        strategy.Validate();
        int[] pool = [.. candidates.Distinct().Order()];
        if (pool.Length != candidates.Count)
        {
            throw new ArgumentException("the candidate blocks must be distinct", nameof(candidates));
        }
        if (droppable.FirstOrDefault(d => !pool.Contains(d), -1) is var stray and >= 0)
        {
            throw new ArgumentException($"droppable block {stray} is not a candidate", nameof(droppable));
        }
        if (k < 0 || k > pool.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(k), k, $"K must lie in [0, {pool.Length}], the number of candidate blocks");
        }
        var canDrop = droppable.ToHashSet();
        var assignments = AssignmentCount(pool.Length, canDrop.Count, k);
        var scored = new List<(BlockAssignment Assignment, double Score)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        double? TryScore(BlockAssignment assignment)
        {
            if (!seen.Add(assignment.Key) || !(feasible?.Invoke(assignment) ?? true))
            {
                return null;
            }
            var value = score(assignment);
            scored.Add((assignment, value));
            return value;
        }

        if (assignments <= strategy.EffectiveExhaustiveLimit)
        {
            foreach (var subset in Combinations(pool, k))
            {
                int[] free = [.. subset.Where(canDrop.Contains)];
                for (var mask = 0L; mask < 1L << free.Length; mask++)
                {
                    int[] dropped = [.. free.Where((_, i) => (mask & (1L << i)) != 0)];
                    TryScore(new BlockAssignment(subset.Except(dropped), dropped));
                }
            }
            return scored.Count > 0
                ? new AssignmentExploration("exhaustive", assignments, scored)
                : throw new InvalidOperationException($"none of the {assignments} assignments of {k} blocks is feasible");
        }

        Evolve(strategy, new Breeding<BlockAssignment>(
            random => WithRandomForms(Sample(pool, k, random), canDrop, random),
            (parent, random) => MutateAssignment(parent, pool, canDrop, random),
            (x, y, random) => CrossoverAssignments(x, y, k, random),
            AssignmentOrder.Instance), TryScore, $"assignment of {k} blocks", start);
        return new AssignmentExploration("evolutionary", assignments, scored);
    }

    /// <summary>
    /// The assignments of K changed blocks among <paramref name="candidates"/> of which
    /// <paramref name="droppable"/> may be dropped: Σ_j C(d, j)·2^j·C(n − d, K − j), saturated at <see cref="long.MaxValue"/>.
    /// </summary>
    public static long AssignmentCount(int candidates, int droppable, int k)
    {
        if (k < 0 || k > candidates || droppable < 0 || droppable > candidates)
        {
            return 0;
        }
        var total = System.Numerics.BigInteger.Zero;
        for (var j = 0; j <= Math.Min(k, droppable); j++)
        {
            total += BigBinomial(droppable, j) * System.Numerics.BigInteger.Pow(2, j) * BigBinomial(candidates - droppable, k - j);
        }
        return total > long.MaxValue ? long.MaxValue : (long)total;
    }

    // How evolution makes new genomes (subsets, or assignments) and ranks them on equal scores.
    private sealed record Breeding<T>(Func<Random, T> Sample, Func<T, Random, T> Mutate, Func<T, T, Random, T> Crossover, IComparer<T> Order);

    // The evolutionary part of SearchStrategy: a random initial population (with `start` too when the
    // draws find less than a population), then generations of children bred from the better half;
    // tryScore returns null for a genome seen before or infeasible.
    private static void Evolve<T>(SearchStrategy strategy, Breeding<T> breeding, Func<T, double?> tryScore, string what, T? start = null)
        where T : class
    {
        var random = new Random(strategy.Seed);
        // Attempts per phase before giving up on finding new feasible genomes.
        var maxAttempts = 50 * strategy.Population;
        var population = new List<(T Genome, double Score)>();
        for (var attempt = 0; population.Count < strategy.Population && attempt < maxAttempts; attempt++)
        {
            var genome = breeding.Sample(random);
            if (tryScore(genome) is double value)
            {
                population.Add((genome, value));
            }
        }
        if (population.Count < strategy.Population && start is not null && tryScore(start) is double startScore)
        {
            population.Add((start, startScore));
        }
        if (population.Count == 0)
        {
            throw new InvalidOperationException($"no feasible {what} found in {maxAttempts} random draws");
        }
        for (var generation = 0; generation < strategy.Generations; generation++)
        {
            population = Rank(population, breeding.Order);
            var parents = population.Take(Math.Max(2, (population.Count + 1) / 2)).Select(p => p.Genome).ToList();
            var children = new List<(T Genome, double Score)>();
            for (var attempt = 0; children.Count < strategy.Population && attempt < maxAttempts; attempt++)
            {
                var crossover = parents.Count >= 2 && random.NextDouble() < 0.5;
                T child;
                if (crossover)
                {
                    var a = random.Next(parents.Count);
                    var b = (a + 1 + random.Next(parents.Count - 1)) % parents.Count;
                    child = breeding.Crossover(parents[a], parents[b], random);
                }
                else
                {
                    child = breeding.Mutate(parents[random.Next(parents.Count)], random);
                }
                if (tryScore(child) is double value)
                {
                    children.Add((child, value));
                }
            }
            population = Rank([.. population, .. children], breeding.Order).Take(strategy.Population).ToList();
        }
    }

    /// <summary>C(n, k), saturated at <see cref="long.MaxValue"/>.</summary>
    public static long Binomial(int n, int k)
    {
        var result = BigBinomial(n, k);
        return result > long.MaxValue ? long.MaxValue : (long)result;
    }

    private static System.Numerics.BigInteger BigBinomial(int n, int k)
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
        return result;
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

    private static List<(T Genome, double Score)> Rank<T>(IEnumerable<(T Genome, double Score)> scored, IComparer<T> order) =>
        [.. scored.OrderByDescending(s => s.Score).ThenBy(s => s.Genome, order)];

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

    // Each droppable block of a subset merged or dropped by a fair coin, in ascending block order.
    private static BlockAssignment WithRandomForms(int[] subset, IReadOnlySet<int> droppable, Random random)
    {
        var dropped = new List<int>();
        foreach (var block in subset)
        {
            if (droppable.Contains(block) && random.Next(2) == 1)
            {
                dropped.Add(block);
            }
        }
        return new BlockAssignment(subset.Except(dropped), dropped);
    }

    // Flips one droppable block's form (probability ½ when there is one), else swaps a changed block
    // for an unchanged candidate, which takes a random legal form; the other blocks keep theirs.
    private static BlockAssignment MutateAssignment(BlockAssignment parent, int[] pool, IReadOnlySet<int> droppable, Random random)
    {
        int[] flippable = [.. parent.Blocks.Where(droppable.Contains)];
        if (flippable.Length > 0 && random.NextDouble() < 0.5)
        {
            var flip = flippable[random.Next(flippable.Length)];
            return parent.Dropped.Contains(flip)
                ? new BlockAssignment([.. parent.Merged, flip], parent.Dropped.Where(b => b != flip))
                : new BlockAssignment(parent.Merged.Where(b => b != flip), [.. parent.Dropped, flip]);
        }
        var outside = pool.Except(parent.Blocks).ToArray();
        if (parent.Blocks.Count == 0 || outside.Length == 0)
        {
            return parent;
        }
        var removed = parent.Blocks[random.Next(parent.Blocks.Count)];
        var added = outside[random.Next(outside.Length)];
        var drop = droppable.Contains(added) && random.Next(2) == 1;
        var merged = parent.Merged.Where(b => b != removed);
        var dropped = parent.Dropped.Where(b => b != removed);
        return drop ? new BlockAssignment(merged, [.. dropped, added]) : new BlockAssignment([.. merged, added], dropped);
    }

    // K blocks sampled uniformly from the union of both parents' blocks, each in the form a parent
    // gave it; where both have it in different forms, a fair coin picks one.
    private static BlockAssignment CrossoverAssignments(BlockAssignment a, BlockAssignment b, int k, Random random)
    {
        var blocks = Sample([.. a.Blocks.Union(b.Blocks).Order()], k, random);
        var dropped = new List<int>();
        foreach (var block in blocks)
        {
            bool inA = a.Blocks.Contains(block), inB = b.Blocks.Contains(block);
            bool dropA = a.Dropped.Contains(block), dropB = b.Dropped.Contains(block);
            var drop = inA && inB && dropA != dropB ? random.Next(2) == 1 : dropA || dropB;
            if (drop)
            {
                dropped.Add(block);
            }
        }
        return new BlockAssignment(blocks.Except(dropped), dropped);
    }

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

    /// <summary>Assignments by their changed blocks (<see cref="SubsetOrder"/>), then by their dropped blocks.</summary>
    private sealed class AssignmentOrder : IComparer<BlockAssignment>
    {
        public static readonly AssignmentOrder Instance = new();

        public int Compare(BlockAssignment? x, BlockAssignment? y)
        {
            ArgumentNullException.ThrowIfNull(x);
            ArgumentNullException.ThrowIfNull(y);
            var c = SubsetOrder.Instance.Compare(x.Blocks, y.Blocks);
            return c != 0 ? c : SubsetOrder.Instance.Compare(x.Dropped, y.Dropped);
        }
    }
}
