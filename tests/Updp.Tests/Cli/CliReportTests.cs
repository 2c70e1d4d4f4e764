using System.Buffers.Binary;
using System.Text;
using SkiaSharp;
using Updp.Benchmarks;
using Updp.Cli.Commands;
using Updp.Cli.Reports;
using Updp.Pruning;
using Updp.Training;

namespace Updp.Tests.Cli;

/// <summary>The figures of prune, search and report (issue 14), drawn from made-up run records.</summary>
public partial class CliTests
{
    private static readonly byte[] PngSignature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Width and height from the PNG's IHDR chunk, after checking the signature; then decodes the whole image.</summary>
    private static (int Width, int Height) PngSize(byte[] png)
    {
        Assert.True(png.Length > 33, $"{png.Length} bytes is no PNG");
        Assert.Equal(PngSignature, png[..8]);
        // The first chunk: length 13, type IHDR, then width and height big-endian.
        Assert.Equal(13u, BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(8)));
        Assert.Equal("IHDR", Encoding.ASCII.GetString(png, 12, 4));
        var size = ((int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(16)), (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(20)));
        using var bitmap = SKBitmap.Decode(png);
        Assert.NotNull(bitmap);
        Assert.Equal(size, (bitmap.Width, bitmap.Height));
        return size;
    }

    private static bool HasColor(byte[] png, ScottPlot.Color color)
    {
        using var bitmap = SKBitmap.Decode(png);
        return bitmap.Pixels.Any(p => p.Red == color.R && p.Green == color.G && p.Blue == color.B);
    }

    private static List<EpochResult> History(int epochs, int steps, double start) =>
        [.. Enumerable.Range(1, epochs).Select(e => new EpochResult(e, start / e, 0.5, 0.5 + 0.1 * e, 1, 1, e == epochs)
        {
            StepLosses = [.. Enumerable.Range(0, steps).Select(s => e == 1 && s == 1 ? float.NaN : (float)(start / (e + 0.1 * s)))],
        })];

    /// <summary>A finished prune run's files with made-up numbers: a mixed search of 3 of 4 blocks under a budget.</summary>
    private static string FakeRun(TempDir dir, bool budget = true)
    {
        var run = dir.File("run");
        Directory.CreateDirectory(Path.Combine(run, "supernet"));
        Directory.CreateDirectory(Path.Combine(run, "finetune"));
        BlockLatency[] blocks = [new(0, 2.0, 1.5, null), new(1, 3.0, 2.0, 0.2), new(2, 3.5, 2.5, 0.1), new(3, 4.0, 3.0, 0.3)];
        var times = new BlockTimes(1, 13, blocks);
        SearchCandidate Candidate(double top1, int[] blocksOf, int[] dropped)
        {
            var assignment = new BlockAssignment(blocksOf.Except(dropped), dropped);
            return new SearchCandidate(assignment.Blocks, top1, 1000, 2_000_000, budget ? times.Predict(assignment) : null, assignment.Forms);
        }
        var search = new SearchResult
        {
            Checkpoint = "supernet/supernet.safetensors",
            Model = "convnext_atto",
            PrunedBlocks = 3,
            CandidateBlocks = [0, 1, 2, 3],
            Method = "exhaustive",
            Space = "mixed",
            DroppableBlocks = [1, 2, 3],
            Strategy = new SearchStrategy(),
            Subsets = 20,
            Scored = 4,
            Constrained = budget,
            Latency = budget ? new LatencyReport(9, 1, 32, 2, null, 13, 5.5, 5.8, 13.2, blocks) : null,
            Split = new ValidationSplit(200, 5),
            InputSize = 32,
            Original = new ModelCost(3000, 9_000_000),
            UnprunedValTop1 = 0.9,
            Candidates = [Candidate(0.8, [1, 2, 3], [2]), Candidate(0.75, [0, 1, 2], []), Candidate(0.7, [1, 2, 3], [1, 2, 3]), Candidate(0.6, [0, 2, 3], [3])],
        };
        RunDirectory.WriteJson(Path.Combine(run, "search.json"), search);
        RunDirectory.WriteJson(Path.Combine(run, "supernet", "metrics.json"), new SupernetResult
        {
            Checkpoint = "supernet.safetensors",
            Model = "convnext_atto",
            Blocks = [0, 1, 2, 3],
            Split = new ValidationSplit(200, 5),
            History = History(2, 5, 2.0),
        });
        var best = search.Candidates[0];
        RunDirectory.WriteJson(Path.Combine(run, "finetune", "metrics.json"), new FinetuneResult
        {
            Model = "convnext_atto",
            Method = "mixed",
            Blocks = best.Blocks,
            Forms = best.Forms,
            InitCheckpoint = "supernet.safetensors",
            Init = "supernet",
            Ramp = 0.5,
            Checkpoint = "pruned.safetensors",
            Original = new ModelCost(3000, 9_000_000),
            Epochs = 3,
            Split = new ValidationSplit(200, 5),
            History = History(3, 4, 1.0),
        });
        RunDirectory.WriteJson(Path.Combine(run, "metrics.json"), new PruneMetrics
        {
            Model = "convnext_atto",
            Method = "mixed",
            Blocks = best.Blocks,
            Top1 = 0.85,
            BaselineTop1 = 0.9,
            LatencyMsB1 = 6,
            BaselineLatencyMsB1 = 13,
        });
        File.WriteAllText(Path.Combine(run, "report.md"), "# UPDP: convnext_atto, 3 blocks pruned (mixed)\n\n| model | test top-1 |\n");
        return run;
    }

    [Fact]
    public void FiguresAreDeterministicPngsOfTheirSizeWithTheChosenModelMarked()
    {
        using var dir = new TempDir();
        var run = FakeRun(dir);
        var search = RunDirectory.ReadJson<SearchResult>(Path.Combine(run, "search.json"));
        var times = BlockTimes.Of(search)!;
        var frontier = Figures.Frontier(RunFigures.SearchFrontier(search, times));
        Assert.Equal(Figures.FrontierSize, PngSize(frontier));
        Assert.True(HasColor(frontier, Figures.ChosenColor), "the chosen model's marker is drawn");
        // The same data draw the same bytes.
        Assert.Equal(frontier, Figures.Frontier(RunFigures.SearchFrontier(search, times)));

        var bars = Figures.BlockLatency(RunFigures.BlockLatency(times, search.Model, search.Candidates[0].Assignment));
        Assert.Equal(Figures.BlockLatencySize, PngSize(bars));
        Assert.True(HasColor(bars, Figures.SeriesColors[2]), "the dropped bars are drawn");

        var finetune = RunDirectory.ReadJson<FinetuneResult>(Path.Combine(run, "finetune", "metrics.json"));
        var panels = RunFigures.Training(RunDirectory.ReadJson<SupernetResult>(Path.Combine(run, "supernet", "metrics.json")).History, finetune);
        Assert.Equal(3, panels.Count);
        // The skipped step (NaN) is kept in the record and left out of the curve.
        Assert.Equal(2 * 5 + 3 * 4, panels[0].Curves.Sum(c => c.Points.Count));
        Assert.Contains(panels[0].Curves.SelectMany(c => c.Points), p => double.IsNaN(p.Y));
        // λ: 0 at the first step, 1 from half of the 12 steps on.
        Assert.Equal([new FigurePoint(1, 0), new FigurePoint(7, 1), new FigurePoint(12, 1)], panels[2].Curves[0].Points);
        var training = Figures.Panels(panels);
        Assert.Equal((Figures.PanelSize.Width, 3 * Figures.PanelSize.Height), PngSize(training));
        Assert.Equal(training, Figures.Panels(RunFigures.Training(RunDirectory.ReadJson<SupernetResult>(Path.Combine(run, "supernet", "metrics.json")).History, finetune)));
    }

    [Fact]
    public void TheParetoFrontKeepsThePointsNoOtherBeats()
    {
        FigurePoint[] points = [new(3, 70), new(1, 50), new(2, 50), new(2, 80), new(4, 75), new(double.NaN, 99), new(5, 90)];
        Assert.Equal([new FigurePoint(1, 50), new FigurePoint(2, 80), new FigurePoint(5, 90)], Figures.ParetoFront(points));
    }

    [Fact]
    public void ReportDrawsARunsFiguresIntoItsReportAndReplacesThemWhenRunAgain()
    {
        using var dir = new TempDir();
        var run = FakeRun(dir);
        var (code, stdout, err) = Run("report", run);
        Assert.True(code == 0, err);
        Assert.Equal(Figures.FrontierSize, PngSize(File.ReadAllBytes(Path.Combine(run, "frontier.png"))));
        Assert.Equal(Figures.BlockLatencySize, PngSize(File.ReadAllBytes(Path.Combine(run, "block_latency.png"))));
        Assert.Equal((Figures.PanelSize.Width, 3 * Figures.PanelSize.Height), PngSize(File.ReadAllBytes(Path.Combine(run, "training.png"))));
        Assert.Contains("training.png", stdout);
        var report = File.ReadAllText(Path.Combine(run, "report.md"));
        Assert.StartsWith("# UPDP: convnext_atto", report);
        foreach (var figure in new[] { "frontier.png", "block_latency.png", "training.png" })
        {
            Assert.Contains($"]({figure})", report);
        }
        var frontier = File.ReadAllBytes(Path.Combine(run, "frontier.png"));
        var drawn = File.GetLastWriteTimeUtc(Path.Combine(run, "frontier.png"));

        // Again: the same pictures, one figures section.
        Thread.Sleep(20);
        (code, _, err) = Run("report", run);
        Assert.True(code == 0, err);
        Assert.Equal(report, File.ReadAllText(Path.Combine(run, "report.md")));
        Assert.Equal(frontier, File.ReadAllBytes(Path.Combine(run, "frontier.png")));
        // Unchanged files are not written again.
        Assert.Equal(drawn, File.GetLastWriteTimeUtc(Path.Combine(run, "frontier.png")));
        Assert.DoesNotContain(dir.Files(), f => f.Contains(".tmp", StringComparison.Ordinal));
    }

    [Fact]
    public void ReportWithoutLatencyTimesDrawsTheFrontierByMacsAndNoBars()
    {
        using var dir = new TempDir();
        var run = FakeRun(dir, budget: false);
        var (code, _, err) = Run("report", run);
        Assert.True(code == 0, err);
        Assert.False(File.Exists(Path.Combine(run, "block_latency.png")));
        Assert.Contains("by MACs", File.ReadAllText(Path.Combine(run, "report.md")));
        Assert.Equal(Figures.FrontierSize, PngSize(File.ReadAllBytes(Path.Combine(run, "frontier.png"))));
    }

    [Fact]
    public void ReportRefusesADirectoryThatIsNoFinishedRunAndAnExistingFrontierWithoutForce()
    {
        using var dir = new TempDir();
        var (code, _, err) = Run("report", dir.Path);
        Assert.Equal(2, code);
        Assert.Contains("not a finished `updp prune` run", err);

        var run = FakeRun(dir);
        var png = dir.File("frontier-all.png");
        (code, _, err) = Run("report", run, run, "--frontier", png);
        Assert.True(code == 0, err);
        Assert.Equal(Figures.FrontierSize, PngSize(File.ReadAllBytes(png)));
        (code, _, err) = Run("report", run, "--frontier", png);
        Assert.Equal(2, code);
        Assert.Contains("--force", err);
        var figure = ReportCommand.CrossRunFrontier([RunDirectory.ReadJson<PruneMetrics>(Path.Combine(run, "metrics.json"))], null);
        Assert.Equal(new FigurePoint(6, 85), Assert.Single(Assert.Single(figure.Series).Points));
    }
}
