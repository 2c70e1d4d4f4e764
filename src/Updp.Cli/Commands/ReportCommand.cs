using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Updp.Cli.Reports;
using Updp.Pruning;
using Updp.Training;

namespace Updp.Cli.Commands;

/// <summary>
/// <c>updp report</c>: draws the figures of finished <c>updp prune</c> runs again from their files
/// (and their section of report.md), or with <c>--frontier</c> one figure of test top-1 against
/// measured latency across runs (the frontier figures of docs/RESULTS.md).
/// </summary>
internal static class ReportCommand
{
    public static Command Create()
    {
        var runs = new Argument<string[]>("run-dir")
        {
            Description = "Run directories of `updp prune` (--out), finished.",
            Arity = ArgumentArity.OneOrMore,
        };
        var frontier = new Option<string?>("--frontier")
        {
            Description = "Instead, write one PNG: each run's merged model (test top-1 against its measured latency at batch 1) by method, their Pareto front and the unpruned baseline.",
        }.OutputPath(isDirectory: false);
        var title = new Option<string?>("--title") { Description = "Title of the --frontier figure." };
        var force = CommonOptions.Force();
        var command = new Command("report",
            $"Draw the figures of finished prune runs again from their files: {PrunePipeline.FrontierFigure}, {PrunePipeline.BlockLatencyFigure} and " +
            $"{PrunePipeline.TrainingFigure} in each run directory, shown in its {PrunePipeline.ReportFile}. The same files give the same figures.")
        {
            runs, frontier, title, force,
        };
        command.SetAction(parse =>
        {
            var dirs = parse.GetValue(runs)!;
            foreach (var dir in dirs)
            {
                if (!Directory.Exists(dir))
                {
                    throw new ArgumentException($"run directory '{dir}' does not exist");
                }
            }
            if (parse.GetValue(frontier) is { } file)
            {
                if (!file.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
                {
                    throw new ArgumentException($"--frontier must be a .png file, got '{file}'");
                }
                OutputFiles.Check("--frontier", [file], parse.GetValue(force));
                var metrics = dirs.Select(d => (Dir: d, Path: Path.Combine(d, PrunePipeline.MetricsFile))).ToList();
                if (metrics.FirstOrDefault(m => !File.Exists(m.Path)) is { Dir: { } unfinished })
                {
                    throw new ArgumentException($"'{unfinished}' is not a finished `updp prune` run: it has no {PrunePipeline.MetricsFile}");
                }
                var figure = CrossRunFrontier(metrics.Select(m => RunDirectory.ReadJson<PruneMetrics>(m.Path)).ToList(), parse.GetValue(title));
                Figures.Write(file, Figures.Frontier(figure));
                AnsiConsole.MarkupLine(Markup.Escape($"wrote {file} ({dirs.Length} run{(dirs.Length == 1 ? "" : "s")})"));
                return 0;
            }
            foreach (var dir in dirs)
            {
                var written = RunFigures.WriteRun(dir);
                AnsiConsole.MarkupLine(Markup.Escape(
                    $"wrote {string.Join(", ", written.Select(f => Path.Combine(dir, f.File)))} and their section of {Path.Combine(dir, PrunePipeline.ReportFile)}"));
            }
            return 0;
        });
        return command;
    }

    /// <summary>The runs' merged models by method, and the baseline (its mean over the runs: each run timed it again).</summary>
    internal static FrontierFigure CrossRunFrontier(IReadOnlyList<PruneMetrics> runs, string? title)
    {
        var models = runs.Select(r => r.Model).Distinct().ToList();
        return new FrontierFigure
        {
            Title = title ?? $"Test top-1 against latency, {string.Join(", ", models)} ({runs.Count} run{(runs.Count == 1 ? "" : "s")})",
            XLabel = "measured latency, batch 1 (ms)",
            YLabel = "test top-1 (%)",
            Series = [.. runs.GroupBy(r => r.Method).OrderBy(g => g.Key, StringComparer.Ordinal)
                .Select(g => new PointSeries(g.Key, [.. g.Select(r => new FigurePoint(r.LatencyMsB1, r.Top1 * 100))]))],
            Baseline = new FigurePoint(runs.Average(r => r.BaselineLatencyMsB1), runs.Average(r => r.BaselineTop1) * 100),
            BaselineLabel = runs.Count == 1 ? "unpruned" : string.Create(CultureInfo.InvariantCulture, $"unpruned (mean of {runs.Count} timings)"),
        };
    }
}
