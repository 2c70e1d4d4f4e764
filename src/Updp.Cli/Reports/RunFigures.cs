using System.Globalization;
using System.Text;
using Updp.Benchmarks;
using Updp.Models;
using Updp.Pruning;
using Updp.Training;

namespace Updp.Cli.Reports;

/// <summary>
/// Per-block times a figure uses: a latency-budgeted search's (kept in <c>search.json</c>) or a
/// latency table's (<c>latency_table.json</c> of a prune run without a budget).
/// </summary>
/// <param name="Batch">The batch the times are for.</param>
/// <param name="ModelMs">The unpruned model, measured whole.</param>
internal sealed record BlockTimes(int Batch, double ModelMs, IReadOnlyList<BlockLatency> Blocks)
{
    public static BlockTimes? Of(SearchResult search) =>
        search.Latency is { Blocks: { Count: > 0 } blocks } latency ? new BlockTimes(latency.Batch, latency.ModelMs, blocks) : null;

    public static BlockTimes Of(BlockLatencyTable table) => new(table.Batch, table.ModelMs, table.Blocks);

    /// <summary>
    /// The latency predicted for <paramref name="assignment"/> as the search predicts it
    /// (<see cref="BlockLatencyTable.Predict(IEnumerable{int}, IEnumerable{int})"/>); null where a block has no time.
    /// </summary>
    public double? Predict(BlockAssignment assignment)
    {
        var byIndex = Blocks.ToDictionary(b => b.Index);
        var ms = ModelMs;
        foreach (var i in assignment.Merged)
        {
            if (!byIndex.TryGetValue(i, out var b))
            {
                return null;
            }
            ms -= b.SavingMs;
        }
        foreach (var i in assignment.Dropped)
        {
            if (!byIndex.TryGetValue(i, out var b) || b.DropSavingMs is not double saving)
            {
                return null;
            }
            ms -= saving;
        }
        return ms;
    }
}

/// <summary>One figure file and the sentence report.md puts under it.</summary>
internal sealed record WrittenFigure(string File, string Title, string Caption);

/// <summary>
/// The figures of a run directory (issue 14; what they show is described in docs/METHOD.md's stages):
/// (a) <c>frontier.png</c>, validation top-1 against predicted latency for every candidate the
/// search scored, with the Pareto front, the chosen model and the unpruned one; (b)
/// <c>block_latency.png</c>, each block's original, merged and dropped latency; (c)
/// <c>training.png</c>, the supernet's and the fine-tune's loss per step, validation top-1 per
/// epoch and the fine-tune's λ. Everything is read from the run's JSON files, so the same files
/// give the same pictures (<c>updp report</c> draws them again).
/// </summary>
internal static class RunFigures
{
    /// <summary>Where the figures section of report.md starts; everything after it is replaced when the figures are drawn again.</summary>
    public const string ReportMarker = "<!-- updp figures: drawn by updp from the run's files; `updp report` draws them again -->";

    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>Figure (a) of a search: every scored candidate, by predicted latency when there are block times, else by MACs.</summary>
    public static FrontierFigure SearchFrontier(SearchResult search, BlockTimes? times)
    {
        ArgumentNullException.ThrowIfNull(search);
        double? X(SearchCandidate c) => times is null ? c.Macs / 1e6 : c.LatencyMs ?? times.Predict(c.Assignment);
        FigurePoint? Point(SearchCandidate c) => X(c) is double x ? new FigurePoint(x, c.ValTop1 * 100) : null;
        var merged = search.Candidates.Where(c => c.Assignment.Dropped.Count == 0).Select(Point).OfType<FigurePoint>().ToList();
        var dropping = search.Candidates.Where(c => c.Assignment.Dropped.Count > 0).Select(Point).OfType<FigurePoint>().ToList();
        List<PointSeries> series = search.Space is null
            ? [new PointSeries("scored subsets", merged)]
            : [new PointSeries("all merged", merged), new PointSeries("with dropped blocks", dropping)];
        var baselineX = times?.ModelMs ?? search.Original.Macs / 1e6;
        var best = search.Candidates.Count > 0 ? search.Candidates[0] : null;
        return new FrontierFigure
        {
            Title = string.Create(C, $"Search: {search.Scored} scored, K = {search.PrunedBlocks} ({search.Model})"),
            XLabel = times is null ? "MACs (millions)" : string.Create(C, $"predicted latency (ms, batch {times.Batch})"),
            YLabel = "validation top-1 (%), supernet",
            Series = series,
            Chosen = best is null ? null : Point(best),
            ChosenLabel = best is null ? "chosen" : $"chosen: {Describe(best.Assignment)}",
            Baseline = search.UnprunedValTop1 is double top1 ? new FigurePoint(baselineX, top1 * 100) : null,
            BaselineX = baselineX,
            BaselineLabel = "unpruned",
            Budget = times is null ? null : search.Latency?.BudgetMs,
        };
    }

    /// <summary>Figure (b): every block of the table, the pruned ones of <paramref name="chosen"/> marked in their labels.</summary>
    public static BlockLatencyFigure BlockLatency(BlockTimes times, string model, BlockAssignment? chosen)
    {
        ArgumentNullException.ThrowIfNull(times);
        string Label(int i) => chosen is null || !chosen.Blocks.Contains(i)
            ? i.ToString(C)
            : chosen.Dropped.Contains(i) ? $"{i}:drop" : $"{i}:merge";
        var bars = times.Blocks.OrderBy(b => b.Index).Select(b => new BlockBars(Label(b.Index), b.OriginalMs, b.MergedMs, b.DroppedMs)).ToList();
        return new BlockLatencyFigure(
            string.Create(C, $"Per-block latency, {model}, batch {times.Batch} (whole model {times.ModelMs:F2} ms)") + (chosen is null ? "" : "; pruned blocks labelled"),
            "latency (ms)", bars);
    }

    /// <summary>
    /// Figure (c): loss per optimisation step, validation top-1 per epoch, and the fine-tune's λ per
    /// step (the ramp of docs/METHOD.md#stage-3-progressive-fine-tuning, as the run computed it).
    /// </summary>
    public static IReadOnlyList<CurvePanel> Training(IReadOnlyList<EpochResult>? supernet, FinetuneResult? finetune)
    {
        var stages = new List<(string Name, IReadOnlyList<EpochResult> History)>();
        if (supernet is { Count: > 0 })
        {
            stages.Add(("supernet", supernet));
        }
        if (finetune is { History.Count: > 0 })
        {
            stages.Add(($"fine-tune ({finetune.Method})", finetune.History));
        }
        var losses = stages.Where(s => s.History.All(e => e.StepLosses is not null))
            .Select(s => new PointSeries(s.Name, StepSeries(s.History))).ToList();
        var missing = stages.Where(s => s.History.Any(e => e.StepLosses is null)).Select(s => s.Name).ToList();
        var lossPanel = new CurvePanel("Training loss per step", "step", "loss", losses,
            missing.Count > 0 ? $"no per-step losses recorded for {string.Join(" and ", missing)}" : stages.Count == 0 ? "no training history" : null);
        var top1 = stages.Select(s => new PointSeries(s.Name == "supernet" ? "supernet (every block original)" : s.Name,
            [.. s.History.Select(e => new FigurePoint(e.Epoch, e.ValTop1 * 100))])).ToList();
        var top1Panel = new CurvePanel("Validation top-1 per epoch", "epoch", "top-1 (%)", top1, stages.Count == 0 ? "no training history" : null);
        return [lossPanel, top1Panel, LambdaPanel(finetune)];
    }

    private static CurvePanel LambdaPanel(FinetuneResult? finetune)
    {
        const string title = "λ of the pruned blocks per fine-tune step";
        if (finetune is not { History.Count: > 0 } f)
        {
            return new CurvePanel(title, "step", "λ", [], "no fine-tune history");
        }
        if (f.Method == "drop")
        {
            return new CurvePanel(title, "step", "λ", [], "method drop: the blocks are removed from the first step (no λ)");
        }
        var stepsPerEpoch = f.History.Max(e => e.StepLosses?.Count ?? 0);
        if (stepsPerEpoch == 0)
        {
            return new CurvePanel(title, "step", "λ", [], string.Create(C, $"ramp {f.Ramp:G3} of training; no per-step record to draw it against"));
        }
        var total = (long)stepsPerEpoch * f.Epochs;
        var ramp = new LambdaRamp(f.Ramp, total);
        // The ramp is piecewise linear: its ends and its knee draw it exactly.
        var knee = (long)Math.Ceiling(f.Ramp * total);
        var points = new[] { 0L, knee, total - 1 }.Where(s => s >= 0 && s < total).Distinct().Order()
            .Select(s => new FigurePoint(s + 1, ramp.At(s))).ToList();
        var note = f.Method == "mixed" && f.Assignment.Dropped.Count > 0
            ? "the dropped blocks fade out on the same ramp"
            : null;
        return new CurvePanel(title, "step", "λ", [new PointSeries(string.Create(C, $"λ (ramp {f.Ramp:G3})"), points)], note);
    }

    // Loss per step over the stage's whole training, steps numbered from 1; a skipped step (NaN) leaves a gap.
    private static List<FigurePoint> StepSeries(IReadOnlyList<EpochResult> history)
    {
        var points = new List<FigurePoint>();
        var step = 0;
        foreach (var epoch in history.OrderBy(e => e.Epoch))
        {
            foreach (var loss in epoch.StepLosses!)
            {
                points.Add(new FigurePoint(++step, loss));
            }
        }
        return points;
    }

    /// <summary>
    /// <c>updp search</c>: figure (a) of <paramref name="search"/>, and with a latency budget figure
    /// (b), into <paramref name="dir"/>, next to its <c>search.json</c>.
    /// </summary>
    public static IReadOnlyList<WrittenFigure> WriteSearch(string dir, SearchResult search)
    {
        ArgumentNullException.ThrowIfNull(search);
        var times = BlockTimes.Of(search);
        var written = new List<WrittenFigure>();
        Figures.Write(Path.Combine(dir, PrunePipeline.FrontierFigure), Figures.Frontier(SearchFrontier(search, times)));
        written.Add(FrontierCaption(search, times));
        if (times is not null)
        {
            Figures.Write(Path.Combine(dir, PrunePipeline.BlockLatencyFigure), Figures.BlockLatency(BlockLatency(times, search.Model, search.Candidates[0].Assignment)));
            written.Add(BlockCaption(times, "the search's latency table"));
        }
        return written;
    }

    /// <summary>
    /// The per-block times of a prune run: the latency-budgeted search's, else <c>latency_table.json</c>
    /// in the run directory; null when neither is there.
    /// </summary>
    public static BlockTimes? TimesOf(string runDir, SearchResult search)
    {
        if (BlockTimes.Of(search) is { } fromSearch)
        {
            return fromSearch;
        }
        var table = Path.Combine(runDir, PrunePipeline.LatencyTableFile);
        return File.Exists(table) ? BlockTimes.Of(BlockLatencyTable.Load(table)) : null;
    }

    /// <summary>
    /// A prune run without a latency budget has no per-block times in its search: the latency table
    /// of the baseline at <paramref name="batch"/> (<c>--latency-batch</c>; this machine's, cached as <c>--latency-budget</c> caches it;
    /// measured when there is none) is copied into the run directory for figures (a) and (b).
    /// Returns whether it was measured. <paramref name="tablePath"/> is the cache file (<c>--latency-table</c>), null for the default.
    /// </summary>
    public static bool EnsureLatencyTable(string runDir, ModelConfig config, int inputSize, int runs, TorchSharp.torch.Device? device, string? tablePath = null, int batch = 1)
    {
        var search = RunDirectory.ReadJson<SearchResult>(PrunePipeline.SearchFile(runDir));
        var copy = Path.Combine(runDir, PrunePipeline.LatencyTableFile);
        if (BlockTimes.Of(search) is not null || File.Exists(copy))
        {
            return false;
        }
        var needDropped = search.Space is not null;
        var table = BlockLatencyTable.LoadOrMeasure(tablePath ?? BlockLatencyTable.DefaultPath(config, inputSize, batch, device), config, inputSize, batch, out var measured,
            runs, device, needDropped);
        BlockLatencyTable.Save(table, copy);
        return measured;
    }

    /// <summary>
    /// Draws figures (a), (b) and (c) of a finished prune run from its files into the run directory
    /// and puts them in its report.md (after <see cref="ReportMarker"/>, replacing what an earlier
    /// drawing put there). The run directory is locked meanwhile.
    /// </summary>
    /// <exception cref="ArgumentException">The directory is not a finished prune run.</exception>
    public static IReadOnlyList<WrittenFigure> WriteRun(string runDir)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(runDir);
        var report = Path.Combine(runDir, PrunePipeline.ReportFile);
        var searchFile = PrunePipeline.SearchFile(runDir);
        foreach (var needed in new[] { searchFile, Path.Combine(runDir, PrunePipeline.MetricsFile), report })
        {
            if (!File.Exists(needed))
            {
                throw new ArgumentException($"'{runDir}' is not a finished `updp prune` run: it has no {Path.GetFileName(needed)}");
            }
        }
        using var runLock = RunLock.Acquire(runDir, "updp report");
        var search = RunDirectory.ReadJson<SearchResult>(searchFile);
        var times = TimesOf(runDir, search);
        var supernetMetrics = Path.Combine(PrunePipeline.SupernetDir(runDir), PrunePipeline.MetricsFile);
        var finetuneMetrics = Path.Combine(PrunePipeline.FinetuneDir(runDir), PrunePipeline.MetricsFile);
        var supernet = File.Exists(supernetMetrics) ? RunDirectory.ReadJson<SupernetResult>(supernetMetrics).History : null;
        var finetune = File.Exists(finetuneMetrics) ? RunDirectory.ReadJson<FinetuneResult>(finetuneMetrics) : null;
        var chosen = finetune?.Assignment ?? (search.Candidates.Count > 0 ? search.Candidates[0].Assignment : null);

        var written = new List<WrittenFigure>();
        Figures.Write(Path.Combine(runDir, PrunePipeline.FrontierFigure), Figures.Frontier(SearchFrontier(search, times)));
        written.Add(FrontierCaption(search, times));
        if (times is not null)
        {
            Figures.Write(Path.Combine(runDir, PrunePipeline.BlockLatencyFigure), Figures.BlockLatency(BlockLatency(times, search.Model, chosen)));
            written.Add(BlockCaption(times, search.Latency is null ? $"`{PrunePipeline.LatencyTableFile}`" : "the search's latency table"));
        }
        Figures.Write(Path.Combine(runDir, PrunePipeline.TrainingFigure), Figures.Panels(Training(supernet, finetune)));
        written.Add(new WrittenFigure(PrunePipeline.TrainingFigure, "Training curves",
            "Stage 1 (supernet: each step samples the blocks it prunes; validated with every block original) and stage 3 (fine-tune): " +
            "the loss each optimisation step minimised, validation top-1 after each epoch, and the λ of the pruned blocks."));
        var before = File.ReadAllText(report);
        var after = WithFigures(before, written);
        if (after != before)
        {
            AtomicFile.WriteAllText(report, after);
        }
        return written;
    }

    /// <summary><paramref name="report"/> with its figures section (after <see cref="ReportMarker"/>) replaced by one for <paramref name="figures"/>.</summary>
    public static string WithFigures(string report, IReadOnlyList<WrittenFigure> figures)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(figures);
        var at = report.IndexOf(ReportMarker, StringComparison.Ordinal);
        var s = new StringBuilder(at < 0 ? report.TrimEnd() : report[..at].TrimEnd());
        s.Append("\n\n").Append(ReportMarker).Append("\n## Figures\n");
        foreach (var f in figures)
        {
            // Relative links: the report and its figures move together.
            s.Append(C, $"\n![{f.Title}]({f.File})\n\n{f.Caption}\n");
        }
        return s.ToString();
    }

    private static WrittenFigure FrontierCaption(SearchResult search, BlockTimes? times) =>
        new(PrunePipeline.FrontierFigure, "Validation top-1 against predicted latency",
            (times is null
                ? "Every candidate the search scored, by MACs (no latency table: the search had no latency budget)"
                : string.Create(C, $"Every candidate the search scored, by the latency its per-block table predicts at batch {times.Batch}")) +
            ", against the supernet's validation top-1 after BN recalibration; the dashed staircase is the Pareto front, the diamond the chosen model, " +
            (search.UnprunedValTop1 is null ? "the black line the unpruned model" : "the black square the unpruned model scored the same way") +
            (times is not null && search.Latency is not null ? ", the dotted line the budget." : ".") +
            " These are search scores on the supernet, before fine-tuning; the table in this report has the fine-tuned model's test top-1.");

    private static WrittenFigure BlockCaption(BlockTimes times, string source) =>
        new(PrunePipeline.BlockLatencyFigure, "Per-block latency",
            string.Create(C, $"Each block timed alone on its own input at batch {times.Batch} ({source}): original, merged and, where the block can be dropped, dropped form; ") +
            "the labels mark the blocks the chosen model merges or drops.");

    private static string Describe(BlockAssignment a) => a.Dropped.Count == 0
        ? $"merge {string.Join(",", a.Merged)}"
        : a.Merged.Count == 0 ? $"drop {string.Join(",", a.Dropped)}" : $"merge {string.Join(",", a.Merged)}, drop {string.Join(",", a.Dropped)}";
}
