using System.CommandLine;
using Spectre.Console;
using Updp.Checkpoints;
using Updp.Cli.Reports;
using Updp.Pruning;
using Updp.Training;

namespace Updp.Cli.Commands;

/// <summary>
/// <c>updp prune</c>: the four stages (supernet → search → finetune → merge) in one run directory,
/// with the measurements; running it again continues after the last finished stage.
/// </summary>
internal static class PruneCommand
{
    public static Command Create()
    {
        var defaults = new PruneOptions { Checkpoint = "", Settings = new StageSettings { Data = "" }, OutDir = "", Blocks = 1 };
        var checkpoint = CommonOptions.Checkpoint();
        checkpoint.Description = "The baseline: an Updp checkpoint (.safetensors + .json sidecar), e.g. OUT/model.safetensors of `updp train`.";
        checkpoint.Required = true;
        var dataOptions = new DataCliOptions(withPreprocessing: false);
        var data = dataOptions.Data;
        var blocks = new Option<int?>("--blocks") { Description = "K: how many blocks to prune (with --latency-budget: default the fewest that can fit it)." }.Range(1, 10_000);
        var budget = LatencyOptions.Budget();
        var latencyBatch = LatencyOptions.Batch();
        var latencyTable = LatencyOptions.Table();
        var latencyEngine = LatencyOptions.Engine();
        var latencyChecks = LatencyOptions.Checks();
        var method = new Option<string>("--method")
        {
            Description = "updp, direct or drop: how stage 3 prunes the K blocks a merge-only search chose (see `updp finetune --help`); " +
                "mixed: the supernet and the search cover keep | merge | drop per block (drop only where the family allows it), " +
                "and stage 3 ramps the merged blocks and fades the dropped ones out.",
            DefaultValueFactory = _ => "updp",
        };
        var outDir = new Option<string>("--out") { Description = "Run directory (supernet/, search.json, finetune/, merged.safetensors, metrics.json, report.md).", Required = true }.OutputPath(isDirectory: true);
        var supernet = new Option<string?>("--supernet")
        {
            Description = "Search and fine-tune from this supernet (supernet/supernet.safetensors of an earlier run with K_max ≥ K) instead of training one: stage 1 is skipped.",
        }.ExistingFile();
        var maxPruned = new Option<int?>("--max-pruned") { Description = "Stage 1: K_max (default: K)." }.Range(1, 10_000);
        var candidates = new Option<string?>("--candidates") { Description = "Blocks that may be pruned, e.g. 1,2,3 (0-based; default: every block)." };
        var supernetEpochs = new Option<int>("--supernet-epochs") { Description = "Stage 1 epochs.", DefaultValueFactory = _ => defaults.Supernet.Epochs }.Range(1, OptionRules.MaxEpochs);
        var finetuneEpochs = new Option<int>("--finetune-epochs") { Description = "Stage 3 epochs.", DefaultValueFactory = _ => defaults.Finetune.Epochs }.Range(1, OptionRules.MaxEpochs);
        var population = new Option<int>("--search-population") { Description = "Stage 2: evolutionary population.", DefaultValueFactory = _ => defaults.Search.Population }.Range(2, 100_000);
        var generations = new Option<int>("--search-generations") { Description = "Stage 2: evolutionary generations.", DefaultValueFactory = _ => defaults.Search.Generations }.Range(0, 100_000);
        var valLimit = new Option<int?>("--search-val-limit") { Description = "Stage 2: score on the first N validation images only." }.Range(1, int.MaxValue);
        var ramp = new Option<double>("--ramp") { Description = "Stage 3 (updp): fraction of training over which λ rises 0→1.", DefaultValueFactory = _ => defaults.Ramp }.Range(0, 1);
        var batch = CommonOptions.BatchSize();
        var lr = CommonOptions.LearningRate(defaults.Finetune.LearningRate);
        lr.Description = "Peak learning rate of stages 1 and 3 (AdamW, cosine).";
        var seed = CommonOptions.Seed();
        var trainLimit = CommonOptions.TrainLimit();
        var maxSteps = CommonOptions.MaxSteps();
        var valSize = CommonOptions.ValSize();
        var calibration = CommonOptions.CalibrationBatches();
        var distill = new Option<string>("--distill")
        {
            Description = "Distil stages 1 and 3 from a teacher: `baseline` (the --checkpoint model), a checkpoint file, or `none`. " +
                "loss = (1−α)·CE + α·T²·KL.",
            DefaultValueFactory = _ => BaselineTeacher,
        }.ExistingFile("baseline", "none");
        var alpha = CommonOptions.DistillAlpha();
        var temperature = CommonOptions.DistillTemperature();
        var latencyRuns = new Option<int>("--latency-runs") { Description = "Timed forward passes per latency measurement.", DefaultValueFactory = _ => defaults.LatencyRuns }.Range(1, 1_000_000);
        var resume = new Option<bool>("--resume") { Description = "Report a finished run in --out again (every stage skipped); an interrupted run with the same settings continues without it." };
        var force = CommonOptions.Force();
        var threads = CommonOptions.Threads();
        var device = CommonOptions.Device();
        var command = new Command("prune",
            "All four stages (supernet → search → finetune → merge) into OUT: search.json, finetune/pruned.safetensors, merged.safetensors, " +
            "metrics.json (baseline_top1, top1, params, macs, merge_max_abs_diff, latencies, speedup) and report.md with its figures (frontier.png, block_latency.png, training.png); " +
            "with --method mixed they give each block's form. " +
            "Run it again after an interruption: finished stages (found by their output files) are skipped. OUT/run.json records the settings; " +
            "a run with other settings, or a finished run without --resume, is refused (--force starts over).")
        {
            checkpoint, data, blocks, budget, latencyBatch, latencyTable, latencyEngine, latencyChecks, method, outDir, supernet, maxPruned, candidates, supernetEpochs, finetuneEpochs, population, generations, valLimit, ramp,
            batch, lr, seed, trainLimit, maxSteps, valSize, calibration, distill, alpha, temperature, latencyRuns, resume, force, threads, device,
        };
        command.Options.Add(dataOptions.SkipBadImages);
        command.Options.Add(dataOptions.Cache);
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            TrainOptions Recipe(int epochs) => new()
            {
                Epochs = epochs,
                BatchSize = parse.GetValue(batch),
                LearningRate = parse.GetValue(lr),
                Seed = parse.GetValue(seed),
                MaxStepsPerEpoch = parse.GetValue(maxSteps),
            };
            var options = defaults with
            {
                Checkpoint = parse.GetValue(checkpoint)!,
                Settings = defaults.Settings with
                {
                    Data = parse.GetValue(data)!,
                    DataOptions = dataOptions.Read(parse),
                    CalibrationBatches = parse.GetValue(calibration),
                    ValidationCount = parse.GetValue(valSize),
                    TrainLimit = parse.GetValue(trainLimit),
                    Device = on,
                },
                OutDir = parse.GetValue(outDir)!,
                Blocks = parse.GetValue(blocks) ?? (parse.GetValue(budget) is null
                    ? throw new ArgumentException("give --blocks K (how many blocks to prune) or --latency-budget MS (or a percentage, e.g. 70%)")
                    : 0),
                LatencyLimit = LatencyOptions.ParseBudget(parse.GetValue(budget)),
                LatencyBatch = parse.GetValue(latencyBatch),
                LatencyTable = parse.GetValue(latencyTable),
                LatencyEngine = LatencyOptions.ParseEngine(parse.GetValue(latencyEngine)),
                LatencyChecks = parse.GetValue(latencyChecks),
                Method = FinetuneCommand.ParseMethod(parse.GetValue(method)),
                SupernetCheckpoint = parse.GetValue(supernet),
                MaxPruned = parse.GetValue(maxPruned),
                Candidates = parse.GetValue(candidates) is { } list ? CommonOptions.ParseBlocks("--candidates", list) : null,
                Supernet = Recipe(parse.GetValue(supernetEpochs)),
                Finetune = Recipe(parse.GetValue(finetuneEpochs)),
                Search = new SearchStrategy { Seed = parse.GetValue(seed), Population = parse.GetValue(population), Generations = parse.GetValue(generations) },
                SearchValidationLimit = parse.GetValue(valLimit),
                Ramp = parse.GetValue(ramp),
                Distillation = CommonOptions.Distillation(Teacher(parse.GetValue(distill)!, parse.GetValue(checkpoint)!), parse.GetValue(alpha), parse.GetValue(temperature)),
                LatencyRuns = parse.GetValue(latencyRuns),
                Resume = parse.GetValue(resume),
                Force = parse.GetValue(force),
            };
            OutputFiles.CheckRunDirectory(options.OutDir, PrunePipeline.RunFiles(options.OutDir),
                options.Checkpoint, options.SupernetCheckpoint, options.Distillation?.Teacher, options.LatencyTable);
            AnsiConsole.MarkupLine(Markup.Escape(
                $"pruning {(options.Blocks == 0 ? $"the fewest blocks that fit {options.LatencyLimit}" : $"{options.Blocks} blocks")} of {options.Checkpoint} on {options.Settings.Data} ({options.Method.ToString().ToLowerInvariant()}, " +
                $"{options.Supernet.Epochs}+{options.Finetune.Epochs} epochs, seed {options.Supernet.Seed}, {TrainCommand.Where(on)}) → {options.OutDir}"));
            var result = ConsoleProgress.Prune(progress => PrunePipeline.Run(options, progress, Interruption.Stoppable("finished stages are kept; run the same command again to skip them and resume the interrupted one")));
            Render(result.Metrics);
            var figures = DrawFigures(options, on);
            AnsiConsole.MarkupLine(Markup.Escape(
                $"wrote {string.Join(", ", new[] { PrunePipeline.SearchFile(options.OutDir), Path.Combine(PrunePipeline.FinetuneDir(options.OutDir), "pruned.safetensors"), Path.Combine(options.OutDir, PrunePipeline.MergedFile), Path.Combine(options.OutDir, PrunePipeline.OnnxFile), Path.Combine(options.OutDir, PrunePipeline.MetricsFile), Path.Combine(options.OutDir, PrunePipeline.ReportFile) }.Concat(figures.Select(f => Path.Combine(options.OutDir, f.File))))}"));
            return 0;
        });
        return command;
    }

    private const string BaselineTeacher = "baseline";

    /// <summary>
    /// The report's figures (<see cref="RunFigures.WriteRun"/>); a run without a latency budget first
    /// gets the baseline's per-block latency table at --latency-batch (reused from the cache when there is one).
    /// </summary>
    private static IReadOnlyList<WrittenFigure> DrawFigures(PruneOptions options, TorchSharp.torch.Device? on)
    {
        try
        {
            if (Checkpoint.ReadMeta(options.Checkpoint) is { Model: { } config, Preprocessing: { } preprocessing })
            {
                try
                {
                    if (RunFigures.EnsureLatencyTable(options.OutDir, config, preprocessing.InputSize, options.LatencyRuns, on, options.LatencyTable, options.LatencyBatch))
                    {
                        AnsiConsole.MarkupLine(Markup.Escape($"measured the per-block latency table of {config.Name} at batch {options.LatencyBatch} for the figures"));
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // The figures do without it: the frontier by MACs, no per-block bars.
                    AnsiConsole.MarkupLine(Markup.Escape($"no per-block latency table for the figures: {e.Message}"));
                }
            }
            return RunFigures.WriteRun(options.OutDir);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new InvalidOperationException(
                $"the run is finished but its figures could not be drawn: {e.Message} (`updp report {options.OutDir}` draws them again)", e);
        }
    }

    /// <summary>
    /// The teacher checkpoint for --distill. Distilling from the baseline is the default: at K=2 on
    /// Fashion-MNIST it turned a 0.9-point loss after a 1-epoch fine-tune into 0.1 (docs/RESULTS.md).
    /// </summary>
    private static string? Teacher(string value, string baseline) => value switch
    {
        BaselineTeacher => baseline,
        "none" => null,
        _ => value,
    };

    private static void Render(PruneMetrics m)
    {
        var table = new Table().AddColumns("model", "test top-1", "params", "MACs", "ms b1", "ms b32", "ORT ms b1", "ORT ms b32");
        table.AddRow("baseline", m.BaselineTop1.ToString("P2"), m.BaselineParams.ToString("N0"), m.BaselineMacs.ToString("N0"),
            m.BaselineLatencyMsB1.ToString("F2"), m.BaselineLatencyMsB32.ToString("F2"), m.OnnxBaselineLatencyMsB1.ToString("F2"), m.OnnxBaselineLatencyMsB32.ToString("F2"));
        var label = m.Forms is null
            ? $"merged [{string.Join(",", m.Blocks)}]"
            : $"merged [{string.Join(",", m.Blocks.Select(b => m.Forms.GetValueOrDefault(b) == BlockAssignment.DropForm ? $"{b} drop" : $"{b}"))}]";
        table.AddRow(Markup.Escape(label), m.Top1.ToString("P2"), m.Params.ToString("N0"), m.Macs.ToString("N0"),
            m.LatencyMsB1.ToString("F2"), m.LatencyMsB32.ToString("F2"), m.OnnxLatencyMsB1.ToString("F2"), m.OnnxLatencyMsB32.ToString("F2"));
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(Markup.Escape(
            $"speed-up {m.Speedup:F2}× (batch 1), {m.SpeedupB32:F2}× (batch 32) in TorchSharp, {m.OnnxSpeedup:F2}× and {m.OnnxSpeedupB32:F2}× in ONNX Runtime; " +
            $"merge check max |Δ| {m.MergeMaxAbsDiff:G3} ≤ {m.MergeTolerance:G3}; model.onnx within {m.OnnxRelativeDiff:G3}·max(1, max |y|)"));
        if (m.LatencyBudgetMs is double budget)
        {
            AnsiConsole.MarkupLine(Markup.Escape(
                $"latency budget {budget:G4} ms at batch {m.LatencyBatch} in {m.LatencyEngine}: predicted {m.PredictedLatencyMs:F2} ms, merged model measured {m.MeasuredLatencyMs:F2} ms" +
                (m.MeasuredLatencyMs is double merged && m.MeasuredBaselineLatencyMs is double unpruned
                    ? $" ({100 * merged / unpruned:F1}% of the unpruned model's {unpruned:F2} ms timed with it)" : "") +
                (m.LatencyMeanAbsErrorPct is double mape ? $"; the search's prediction error, mean absolute over {m.LatencyChecks?.Count} candidates: {mape:F1}%" : "")));
        }
    }
}
