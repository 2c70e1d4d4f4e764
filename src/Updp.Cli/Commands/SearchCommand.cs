using System.CommandLine;
using Spectre.Console;
using Updp.Cli.Reports;
using Updp.Pruning;
using Updp.Training;

namespace Updp.Cli.Commands;

/// <summary>
/// <c>updp search</c> (stage 2): ranks the subsets of K blocks by the supernet's validation top-1
/// (after BN recalibration per subset) and writes OUT/search.json.
/// </summary>
internal static class SearchCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        checkpoint.Description = "The supernet (OUT/supernet.safetensors of `updp supernet`); a baseline works too.";
        checkpoint.Required = true;
        var dataOptions = new DataCliOptions(withPreprocessing: false);
        var data = dataOptions.Data;
        var blocks = new Option<int?>("--blocks") { Description = "K: how many blocks each candidate subset prunes (with --latency-budget: default the fewest that can fit it)." }.Range(1, 10_000);
        var budget = LatencyOptions.Budget();
        var latencyBatch = LatencyOptions.Batch();
        var latencyTable = LatencyOptions.Table();
        var latencyEngine = LatencyOptions.Engine();
        var latencyChecks = LatencyOptions.Checks();
        var candidates = new Option<string?>("--candidates") { Description = "Blocks subsets are drawn from, e.g. 1,2,3 (0-based; default: every block)." };
        var method = CommonOptions.SpaceMethod("chosen");
        var outDir = new Option<string>("--out") { Description = "Directory for search.json.", Required = true }.OutputPath(isDirectory: true);
        var strategy = new SearchStrategy();
        var population = new Option<int>("--population") { Description = "Evolutionary search: subsets per generation.", DefaultValueFactory = _ => strategy.Population }.Range(2, 100_000);
        var generations = new Option<int>("--generations") { Description = "Evolutionary search: generations after the random first one.", DefaultValueFactory = _ => strategy.Generations }.Range(0, 100_000);
        var exhaustive = new Option<long?>("--exhaustive-limit") { Description = "Score every subset when there are at most this many (default: population·(generations+1))." }.Range(0, long.MaxValue);
        var seed = CommonOptions.Seed();
        seed.Description = "Seed of the evolutionary search and of the calibration batches.";
        var valLimit = new Option<int?>("--val-limit") { Description = "Score on the first N validation images only (faster, noisier)." }.Range(1, int.MaxValue);
        var valSize = CommonOptions.ValSize();
        var calibration = CommonOptions.CalibrationBatches();
        var top = new Option<int>("--top") { Description = "Candidates to print.", DefaultValueFactory = _ => 10 }.Range(1, 100_000);
        var force = CommonOptions.Force();
        var threads = CommonOptions.Threads();
        var device = CommonOptions.Device();
        var command = new Command("search",
            "Stage 2: rank the K-block subsets by validation top-1 of the supernet; writes OUT/search.json and OUT/frontier.png " +
            "(every scored subset's validation top-1 against its predicted latency, or MACs without --latency-budget; with a budget also OUT/block_latency.png). " +
            "Every subset is scored when there are at most --exhaustive-limit of them; otherwise an evolutionary search " +
            "(a random population of --population subsets, then --generations rounds of mutation and crossover among the better half, " +
            "the best --population surviving; at most population·(generations+1) subsets scored; all randomness from --seed). " +
            "With --method mixed the candidates are assignments: K blocks, each merged or (where it can be) dropped; search.json then gives each block's form.")
        {
            checkpoint, data, blocks, budget, latencyBatch, latencyTable, latencyEngine, latencyChecks, candidates, method, outDir, population, generations, exhaustive, seed, valLimit, valSize, calibration, top, force,
            threads, device,
        };
        command.Options.Add(dataOptions.SkipBadImages);
        command.Options.Add(dataOptions.Cache);
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            // The figures go next to search.json: the frontier always, the per-block latency with a budget.
            string[] written = [SubnetSearch.ResultFile, PrunePipeline.FrontierFigure, .. parse.GetValue(budget) is null ? Array.Empty<string>() : [PrunePipeline.BlockLatencyFigure]];
            OutputFiles.Check("--out", written.Select(f => Path.Combine(parse.GetValue(outDir)!, f)), parse.GetValue(force), parse.GetValue(checkpoint));
            var candidateList = parse.GetValue(candidates) is { } list ? CommonOptions.ParseBlocks("--candidates", list) : null;
            var space = CommonOptions.ParseSpace(parse.GetValue(method));
            var (k, latency) = LatencyOptions.Resolve(parse.GetValue(checkpoint)!, parse.GetValue(blocks), LatencyOptions.ParseBudget(parse.GetValue(budget)),
                parse.GetValue(latencyBatch), parse.GetValue(latencyTable), candidateList, on, space, LatencyOptions.ParseEngine(parse.GetValue(latencyEngine)));
            var options = new SearchOptions
            {
                Checkpoint = parse.GetValue(checkpoint)!,
                Settings = new StageSettings
                {
                    Data = parse.GetValue(data)!,
                    DataOptions = dataOptions.Read(parse),
                    CalibrationBatches = parse.GetValue(calibration),
                    ValidationCount = parse.GetValue(valSize),
                    Device = on,
                },
                Blocks = k,
                Space = space,
                Latency = latency,
                LatencyChecks = parse.GetValue(latencyChecks),
                OutDir = parse.GetValue(outDir)!,
                Candidates = candidateList,
                Strategy = new SearchStrategy
                {
                    Seed = parse.GetValue(seed),
                    Population = parse.GetValue(population),
                    Generations = parse.GetValue(generations),
                    ExhaustiveLimit = parse.GetValue(exhaustive),
                },
                ValidationLimit = parse.GetValue(valLimit),
            };
            var result = ConsoleProgress.Search(progress => SubnetSearch.Run(options, progress,
                Interruption.Stoppable("nothing was written; run the same command again to search from the start")));
            Render(result, parse.GetValue(top));
            IReadOnlyList<WrittenFigure> figures;
            using (RunLock.Acquire(options.OutDir, "updp search"))
            {
                figures = RunFigures.WriteSearch(options.OutDir, result);
            }
            AnsiConsole.MarkupLine(Markup.Escape(
                $"wrote {string.Join(", ", figures.Select(f => f.File).Prepend(SubnetSearch.ResultFile).Select(f => Path.Combine(options.OutDir, f)))}"));
            return 0;
        });
        return command;
    }

    /// <summary>The best candidates as a table.</summary>
    public static void Render(SearchResult result, int top)
    {
        var mixed = result.Space is not null;
        AnsiConsole.MarkupLine(Markup.Escape(
            $"{result.Method} {(mixed ? "mixed " : "")}search of K = {result.PrunedBlocks} among blocks {string.Join(",", result.CandidateBlocks)}" +
            (result.DroppableBlocks is { } droppable ? $" (droppable {string.Join(",", droppable)})" : "") + ": " +
            $"{result.Scored} of {result.Subsets} {(mixed ? "assignments" : "subsets")} scored on {result.ValidationImages} validation images in {result.Seconds:F0} s"));
        var latency = result.Latency;
        var table = new Table().AddColumns("rank", "blocks", "val top-1", "params", "MACs");
        if (mixed)
        {
            table.AddColumn("dropped");
        }
        if (latency is not null)
        {
            table.AddColumn($"predicted ms (b{latency.Batch})");
        }
        foreach (var (c, i) in result.Candidates.Take(Math.Max(top, 0)).Select((c, i) => (c, i)))
        {
            string[] cells = [(i + 1).ToString(), string.Join(",", c.Blocks), c.ValTop1.ToString("P2"), c.Params.ToString("N0"), c.Macs.ToString("N0")];
            if (mixed)
            {
                cells = [.. cells, c.Assignment.Dropped.Count > 0 ? string.Join(",", c.Assignment.Dropped) : "-"];
            }
            table.AddRow(latency is null ? cells : [.. cells, c.LatencyMs?.ToString("F2") ?? ""]);
        }
        string[] unpruned = ["", "(none pruned)", "", result.Original.Params.ToString("N0"), result.Original.Macs.ToString("N0")];
        if (mixed)
        {
            unpruned = [.. unpruned, ""];
        }
        table.AddRow(latency is null ? unpruned : [.. unpruned, latency.ModelMs.ToString("F2")]);
        AnsiConsole.Write(table);
        if (latency is not null)
        {
            AnsiConsole.MarkupLine(Markup.Escape(
                $"latency budget {latency.BudgetMs:G4} ms{(latency.Requested is { } r && r.EndsWith('%') ? $" ({r})" : "")} at batch {latency.Batch} in {latency.Engine}: " +
                $"best subset predicted {latency.PredictedMs:F2} ms, measured again {latency.MeasuredMs:F2} ms (unpruned {latency.MeasuredBaselineMs:F2} ms in the same run, {latency.Threads} threads)"));
            if (latency.MeanAbsErrorPct is double mape)
            {
                AnsiConsole.MarkupLine(Markup.Escape(
                    $"prediction error on {latency.Checks.Count} candidates timed whole: {string.Join(", ", latency.Checks.Select(c => $"{c.ErrorPct:+0.0;-0.0}%"))}; mean absolute {mape:F1}%"));
            }
        }
    }
}
