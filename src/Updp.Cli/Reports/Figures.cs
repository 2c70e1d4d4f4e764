using ScottPlot;
using SkiaSharp;

namespace Updp.Cli.Reports;

/// <summary>One point of a figure, in the units its axes show.</summary>
internal readonly record struct FigurePoint(double X, double Y);

/// <summary>Points (or a curve) drawn in one colour under one legend entry.</summary>
internal sealed record PointSeries(string Name, IReadOnlyList<FigurePoint> Points);

/// <summary>
/// Figure (a) and the cross-run frontier: scored models as points (higher and further left is
/// better), the Pareto front over all of them, and optionally the chosen model, the unpruned
/// model and a budget.
/// </summary>
internal sealed record FrontierFigure
{
    public required string Title { get; init; }

    public required string XLabel { get; init; }

    public required string YLabel { get; init; }

    /// <summary>The points, one series per kind (e.g. merge-only and with dropped blocks, or one per method).</summary>
    public required IReadOnlyList<PointSeries> Series { get; init; }

    public FigurePoint? Chosen { get; init; }

    public string ChosenLabel { get; init; } = "chosen";

    /// <summary>The unpruned model; with only <see cref="BaselineX"/> known it is drawn as a vertical line.</summary>
    public FigurePoint? Baseline { get; init; }

    public double? BaselineX { get; init; }

    public string BaselineLabel { get; init; } = "unpruned";

    /// <summary>A latency budget on the x axis, drawn as a dashed vertical line.</summary>
    public double? Budget { get; init; }
}

/// <summary>One block's bars in figure (b): its latency in each form; <see cref="DroppedMs"/> null where it cannot be dropped.</summary>
internal sealed record BlockBars(string Label, double OriginalMs, double MergedMs, double? DroppedMs);

/// <summary>Figure (b): per-block latency in the original, merged and dropped forms.</summary>
internal sealed record BlockLatencyFigure(string Title, string YLabel, IReadOnlyList<BlockBars> Blocks);

/// <summary>One panel of figure (c): curves on shared axes, or <see cref="Note"/> where there is nothing to draw.</summary>
internal sealed record CurvePanel(string Title, string XLabel, string YLabel, IReadOnlyList<PointSeries> Curves, string? Note = null);

/// <summary>
/// The figures of <c>updp prune</c>, <c>search</c> and <c>report</c>, drawn with ScottPlot from
/// plain data, as PNG bytes of a fixed size. Nothing here reads a run directory
/// (<see cref="RunFigures"/> does), so every figure can be drawn from points made up in a test.
/// </summary>
internal static class Figures
{
    /// <summary>Pixel size of <see cref="Frontier"/>.</summary>
    public static readonly (int Width, int Height) FrontierSize = (900, 600);

    /// <summary>Pixel size of <see cref="BlockLatency"/>.</summary>
    public static readonly (int Width, int Height) BlockLatencySize = (1000, 500);

    /// <summary>Pixel size of one panel of <see cref="Panels"/>; the image is this wide and this high times the panels.</summary>
    public static readonly (int Width, int Height) PanelSize = (900, 340);

    /// <summary>The chosen model's marker colour (tests look for it).</summary>
    public static readonly Color ChosenColor = Color.FromHex("#d62728");

    /// <summary>The unpruned model's marker colour.</summary>
    public static readonly Color BaselineColor = Colors.Black;

    /// <summary>The colours of series, bars and curves, in order (Tableau 10 without the red and grey kept for the markers).</summary>
    public static readonly Color[] SeriesColors =
        [Color.FromHex("#1f77b4"), Color.FromHex("#ff7f0e"), Color.FromHex("#2ca02c"), Color.FromHex("#9467bd"), Color.FromHex("#8c564b"), Color.FromHex("#17becf")];

    private static readonly Color FrontColor = Color.FromHex("#555555");

    static Figures()
    {
        // ScottPlot takes the first font it finds for "sans", a serif on a machine with only the
        // DejaVu fonts; a real sans-serif face reads better at small sizes where there is one.
        var installed = SKFontManager.Default.FontFamilies.ToHashSet(StringComparer.OrdinalIgnoreCase);
        if (new[] { "DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial", "Helvetica" }.FirstOrDefault(installed.Contains) is { } sans)
        {
            Fonts.Default = sans;
        }
    }

    /// <summary>
    /// The points of <paramref name="points"/> that no other point beats, when lower x and higher y
    /// are better, by increasing x (a point equal to another on both axes keeps only the first).
    /// Non-finite points are ignored.
    /// </summary>
    public static IReadOnlyList<FigurePoint> ParetoFront(IEnumerable<FigurePoint> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        var front = new List<FigurePoint>();
        foreach (var p in points.Where(Finite).OrderBy(p => p.X).ThenByDescending(p => p.Y))
        {
            if (front.Count == 0 || p.Y > front[^1].Y)
            {
                front.Add(p);
            }
        }
        return front;
    }

    /// <summary>Figure (a), or the cross-run frontier, as PNG bytes of <see cref="FrontierSize"/>.</summary>
    public static byte[] Frontier(FrontierFigure figure)
    {
        ArgumentNullException.ThrowIfNull(figure);
        var plot = NewPlot(figure.Title, figure.XLabel, figure.YLabel);
        foreach (var (series, i) in figure.Series.Select((s, i) => (s, i)))
        {
            var points = series.Points.Where(Finite).ToArray();
            if (points.Length == 0)
            {
                continue;
            }
            var scatter = plot.Add.ScatterPoints(points.Select(p => p.X).ToArray(), points.Select(p => p.Y).ToArray(), SeriesColors[i % SeriesColors.Length]);
            scatter.MarkerSize = 7;
            scatter.LegendText = $"{series.Name} ({points.Length})";
        }
        var front = ParetoFront(figure.Series.SelectMany(s => s.Points));
        if (front.Count > 1)
        {
            // A staircase: below the next front point's x, the best reachable is the previous point's y.
            var line = plot.Add.ScatterLine(front.Select(p => p.X).ToArray(), front.Select(p => p.Y).ToArray(), FrontColor);
            line.ConnectStyle = ConnectStyle.StepHorizontal;
            line.LineWidth = 1.5f;
            line.LinePattern = LinePattern.Dashed;
            line.LegendText = "Pareto front";
        }
        if (figure.Budget is double budget && double.IsFinite(budget))
        {
            var v = plot.Add.VerticalLine(budget, 1.5f, ChosenColor.WithAlpha(0.6), LinePattern.Dotted);
            v.LegendText = "budget";
        }
        if (figure.Baseline is { } baseline && Finite(baseline))
        {
            var m = plot.Add.Marker(baseline.X, baseline.Y, MarkerShape.FilledSquare, 11, BaselineColor);
            m.LegendText = figure.BaselineLabel;
        }
        else if (figure.BaselineX is double x && double.IsFinite(x))
        {
            var v = plot.Add.VerticalLine(x, 1.5f, BaselineColor, LinePattern.Solid);
            v.LegendText = figure.BaselineLabel;
        }
        if (figure.Chosen is { } chosen && Finite(chosen))
        {
            var m = plot.Add.Marker(chosen.X, chosen.Y, MarkerShape.FilledDiamond, 15, ChosenColor);
            m.LegendText = figure.ChosenLabel;
        }
        plot.Axes.Margins(0.08, 0.12);
        // Under the data area: inside it the legend would hide points (the unpruned one sits in a corner).
        plot.Legend.Orientation = Orientation.Horizontal;
        plot.ShowLegend(Edge.Bottom);
        return Png(plot, FrontierSize.Width, FrontierSize.Height);
    }

    /// <summary>Figure (b) as PNG bytes of <see cref="BlockLatencySize"/>: three bars per block, the dropped one only where there is one.</summary>
    public static byte[] BlockLatency(BlockLatencyFigure figure)
    {
        ArgumentNullException.ThrowIfNull(figure);
        var plot = NewPlot(figure.Title, "block", figure.YLabel);
        string[] forms = ["original", "merged", "dropped"];
        var bars = new List<Bar>();
        var ticks = new List<(double Position, string Label)>();
        for (var i = 0; i < figure.Blocks.Count; i++)
        {
            var block = figure.Blocks[i];
            double?[] values = [block.OriginalMs, block.MergedMs, block.DroppedMs];
            // Four slots per block: three bars and a gap.
            var start = i * 4.0;
            for (var f = 0; f < 3; f++)
            {
                if (values[f] is double ms && double.IsFinite(ms))
                {
                    bars.Add(new Bar { Position = start + f, Value = ms, FillColor = SeriesColors[f], LineWidth = 0, Size = 0.9 });
                }
            }
            ticks.Add((start + 1, block.Label));
        }
        if (bars.Count > 0)
        {
            plot.Add.Bars(bars);
        }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual([.. ticks.Select(t => t.Position)], [.. ticks.Select(t => t.Label)]);
        plot.Axes.Margins(0.02, 0.1);
        // Headroom above the tallest bar keeps the legend off the bars.
        plot.Axes.SetLimitsY(0, bars.Count > 0 ? bars.Max(b => b.Value) * 1.3 : 1);
        for (var f = 0; f < 3; f++)
        {
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = forms[f], FillColor = SeriesColors[f] });
        }
        plot.Legend.Orientation = Orientation.Horizontal;
        plot.ShowLegend(Alignment.UpperRight);
        return Png(plot, BlockLatencySize.Width, BlockLatencySize.Height);
    }

    /// <summary>
    /// Figure (c): <paramref name="panels"/> stacked top to bottom, each <see cref="PanelSize"/>, as
    /// one PNG (e.g. loss per step, validation top-1 per epoch, λ per step).
    /// </summary>
    public static byte[] Panels(IReadOnlyList<CurvePanel> panels)
    {
        ArgumentNullException.ThrowIfNull(panels);
        ArgumentOutOfRangeException.ThrowIfZero(panels.Count, nameof(panels));
        var (width, height) = PanelSize;
        using var surface = SKSurface.Create(new SKImageInfo(width, height * panels.Count, SKColorType.Rgba8888, SKAlphaType.Premul))
            ?? throw new InvalidOperationException("SkiaSharp could not create a drawing surface");
        surface.Canvas.Clear(SKColors.White);
        for (var i = 0; i < panels.Count; i++)
        {
            var panel = panels[i];
            var drawn = panel.Curves.Count(c => c.Points.Any(Finite));
            // A note beside curves goes under the axis, where it cannot hide them; alone it fills the panel.
            var xLabel = panel.Note is { } aside && drawn > 0 ? $"{panel.XLabel}  ({aside})" : panel.XLabel;
            var plot = NewPlot(panel.Title, xLabel, panel.YLabel);
            foreach (var (curve, c) in panel.Curves.Select((s, c) => (s, c)))
            {
                var points = curve.Points.Where(Finite).ToArray();
                if (points.Length == 0)
                {
                    continue;
                }
                var color = SeriesColors[c % SeriesColors.Length];
                // A curve of one point (a one-epoch run) is still seen.
                var line = points.Length == 1
                    ? plot.Add.ScatterPoints(points.Select(p => p.X).ToArray(), points.Select(p => p.Y).ToArray(), color)
                    : plot.Add.ScatterLine(points.Select(p => p.X).ToArray(), points.Select(p => p.Y).ToArray(), color);
                line.LineWidth = 1.5f;
                line.MarkerSize = points.Length <= 50 ? 6 : 0;
                line.LegendText = curve.Name;
            }
            if (drawn == 0 && panel.Note is { } note)
            {
                var text = plot.Add.Annotation(note, Alignment.MiddleCenter);
                text.LabelFontSize = 13;
            }
            if (drawn > 0)
            {
                plot.Axes.Margins(0.03, 0.12);
                // Under the data area, where no curve runs beneath it, and the same width for every panel.
                plot.Legend.Orientation = Orientation.Horizontal;
                plot.ShowLegend(Edge.Bottom);
            }
            // Steps and epochs are whole numbers.
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
            // Each panel drawn on its own and pasted below the one before (a plot rendered into part
            // of a canvas clears the whole of it).
            using var image = SKImage.FromEncodedData(Png(plot, width, height))
                ?? throw new InvalidOperationException("SkiaSharp could not decode a panel it drew");
            surface.Canvas.DrawImage(image, 0, height * i, SKSamplingOptions.Default);
        }
        using var snapshot = surface.Snapshot();
        using var data = snapshot.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>
    /// Writes PNG bytes to <paramref name="path"/> through a temporary file and a rename, unless the
    /// file already holds them (a finished run reported again keeps its files untouched).
    /// </summary>
    public static void Write(string path, byte[] png)
    {
        ArgumentNullException.ThrowIfNull(png);
        if (File.Exists(path) && new FileInfo(path).Length == png.Length && File.ReadAllBytes(path).AsSpan().SequenceEqual(png))
        {
            return;
        }
        AtomicFile.Write(path, s => s.Write(png));
    }

    private static bool Finite(FigurePoint p) => double.IsFinite(p.X) && double.IsFinite(p.Y);

    private static Plot NewPlot(string title, string xLabel, string yLabel)
    {
        var plot = new Plot();
        plot.Title(title, size: 16);
        plot.XLabel(xLabel, size: 14);
        plot.YLabel(yLabel, size: 14);
        return plot;
    }

    private static byte[] Png(Plot plot, int width, int height) => plot.GetImageBytes(width, height, ImageFormat.Png);
}
