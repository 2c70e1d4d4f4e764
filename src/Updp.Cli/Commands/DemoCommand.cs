using System.CommandLine;
using Spectre.Console;
using Updp.Pruning;
using Updp.Training;

namespace Updp.Cli.Commands;

/// <summary>
/// <c>updp demo</c>: the main job on the built-in default. Trains the convnext_atto baseline on
/// Fashion-MNIST (cached: a finished run is reused, an interrupted one resumed), prunes it at
/// K = 2 and 4 with the whole pipeline (one supernet shared by both), and tabulates the results.
/// </summary>
internal static class DemoCommand
{
    /// <summary>The baseline recipe; docs/BENCHMARKS.md records what it measures.</summary>
    public static TrainRunOptions BaselineRecipe(string outDir, int epochs, int seed) => new()
    {
        ModelName = "convnext_atto",
        Data = "fashion-mnist",
        OutDir = outDir,
        InputSize = 32,
        StemStride = 4,
        // The run is too short to overfit (12 epochs with a padding-2 crop ended at 90.3% train and
        // val top-1), so the demo keeps only the flips.
        CropPadding = 0,
        Train = new TrainOptions { Epochs = epochs, BatchSize = 128, LearningRate = 4e-3, WarmupEpochs = 1, Seed = seed },
    };

    public const int DefaultEpochs = 12;

    /// <summary>
    /// The pruning recipe: short, so that the whole demo fits in 30 minutes on 2 cores. One supernet
    /// with K_max = the largest K serves every K; the search scores 1000 validation images; both
    /// training stages run one epoch at the fine-tuning learning rate, distilled from the baseline.
    /// </summary>
    public static PruneOptions PruneRecipe(string baseline, string outDir, int blocks, int maxPruned, string? supernet, int seed) => new()
    {
        Checkpoint = baseline,
        Settings = new StageSettings { Data = "fashion-mnist" },
        OutDir = outDir,
        Blocks = blocks,
        MaxPruned = maxPruned,
        SupernetCheckpoint = supernet,
        Supernet = new TrainOptions { Epochs = 1, LearningRate = FinetuneOptions.FineTuningLearningRate, Seed = seed },
        Search = new SearchStrategy { Seed = seed, Population = 12, Generations = 5 },
        SearchValidationLimit = 1000,
        Finetune = FinetuneOptions.DefaultRecipe with { Epochs = 1, Seed = seed },
        Distillation = new DistillationOptions { Teacher = baseline },
    };

    public static readonly int[] DefaultBlocks = [2, 4];

    public static Command Create()
    {
        var outDir = new Option<string>("--out") { Description = "Directory for the demo's runs.", DefaultValueFactory = _ => Path.Combine("runs", "demo") }.OutputPath(isDirectory: true);
        var epochs = new Option<int>("--epochs") { Description = "Baseline training epochs.", DefaultValueFactory = _ => DefaultEpochs }.Range(1, OptionRules.MaxEpochs);
        var blocks = new Option<string>("--blocks")
        {
            Description = "The K values to prune (comma-separated); none: only the baseline.",
            DefaultValueFactory = _ => string.Join(",", DefaultBlocks),
        };
        var seed = CommonOptions.Seed();
        var threads = CommonOptions.Threads();
        var device = CommonOptions.Device();
        var command = new Command("demo",
            "Train the convnext_atto baseline on Fashion-MNIST (cached), prune it at K = 2 and 4 (`updp prune`, one shared supernet) and tabulate top-1, size and latency.")
        {
            outDir, epochs, blocks, seed, threads, device,
        };
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            var started = DateTime.UtcNow;
            // Checked before the baseline trains for twenty minutes.
            var ks = parse.GetValue(blocks) is { Length: > 0 } list && list != "none" ? CommonOptions.ParseBlocks("--blocks", list) : [];
            if (ks.Contains(0))
            {
                throw new ArgumentException($"--blocks: expected K values ≥ 1, e.g. 2,4, got '{parse.GetValue(blocks)}'");
            }
            var recipe = BaselineRecipe(Path.Combine(parse.GetValue(outDir)!, "baseline"), parse.GetValue(epochs), parse.GetValue(seed)) with { Device = on };
            var baseline = CachedOrTrain(recipe);
            var pruned = new List<PruneMetrics>();
            string? supernet = null;
            foreach (var k in ks)
            {
                var options = PruneRecipe(Path.Combine(recipe.OutDir, "model" + Checkpoints.Checkpoint.WeightsExtension), Path.Combine(parse.GetValue(outDir)!, $"prune-K{k}"),
                    k, ks.Max(), supernet, parse.GetValue(seed));
                options = options with { Settings = options.Settings with { Device = on } };
                AnsiConsole.MarkupLine(Markup.Escape($"pruning {k} blocks ({options.Supernet.Epochs}+{options.Finetune.Epochs} epochs) → {options.OutDir}"));
                pruned.Add(Prune(options));
                supernet ??= Path.Combine(PrunePipeline.SupernetDir(options.OutDir), SupernetTraining.CheckpointName + Checkpoints.Checkpoint.WeightsExtension);
            }
            AnsiConsole.Write(Summary(baseline, pruned, recipe.OutDir, DateTime.UtcNow - started, on));
            return 0;
        });
        return command;
    }

    private static Table Summary(TrainMetrics baseline, IReadOnlyList<PruneMetrics> pruned, string baselineDir, TimeSpan took, TorchSharp.torch.Device device)
    {
        var table = new Table().AddColumns("model", "blocks pruned", "test top-1", "params", "MACs (32×32)", "ms b1", "ms b32", "speed-up b1", "speed-up b32");
        foreach (var column in table.Columns.Skip(2))
        {
            column.RightAligned();
        }
        // The pipeline times the baseline beside each merged model; the first measurement stands for it.
        var first = pruned.FirstOrDefault();
        table.AddRow(baseline.Model, "–", $"{baseline.Top1:P2}", $"{baseline.Params:N0}", $"{baseline.Macs:N0}",
            first is null ? "" : $"{first.BaselineLatencyMsB1:F2}", first is null ? "" : $"{first.BaselineLatencyMsB32:F2}", "1.00×", "1.00×");
        foreach (var m in pruned)
        {
            table.AddRow($"merged K={m.Blocks.Count}", string.Join(",", m.Blocks), $"{m.Top1:P2}", $"{m.Params:N0}", $"{m.Macs:N0}",
                $"{m.LatencyMsB1:F2}", $"{m.LatencyMsB32:F2}", $"{m.Speedup:F2}×", $"{m.SpeedupB32:F2}×");
        }
        var where = Devices.IsCpu(device) ? "CPU" : $"on {Devices.Name(device)}";
        table.Caption(Markup.Escape($"Fashion-MNIST test set; baseline in {baselineDir}; latency: TorchSharp {where}, " +
            $"{TorchSharp.torch.get_num_threads()} threads, median, each speed-up against the baseline timed in the same run; demo took {took.TotalMinutes:F1} min"));
        return table;
    }

    /// <summary>
    /// Runs the pipeline in one of the demo's own run directories: a finished run with the same
    /// settings is reported again, an interrupted one continued, and one made with other settings
    /// (an earlier demo with another --seed, --epochs or --blocks) replaced, as the baseline is.
    /// </summary>
    private static PruneMetrics Prune(PruneOptions options)
    {
        PruneMetrics Run(PruneOptions o) => ConsoleProgress.Prune(progress => PrunePipeline.Run(o, progress,
            Interruption.Stoppable("the finished runs in --out are kept; run the demo again to continue"))).Metrics;
        try
        {
            return Run(options with { Resume = true });
        }
        catch (RunSettingsMismatchException e) when (e.Directory == options.OutDir)
        {
            AnsiConsole.MarkupLine(Markup.Escape($"{options.OutDir} was pruned with other settings ({string.Join("; ", e.Differences)}); pruning again"));
            return Run(options with { Force = true });
        }
    }

    /// <summary>Reuses a finished run with the same recipe, resumes an interrupted one, or trains.</summary>
    public static TrainMetrics CachedOrTrain(TrainRunOptions recipe)
    {
        var metricsFile = Path.Combine(recipe.OutDir, "metrics.json");
        if (File.Exists(metricsFile))
        {
            var cached = RunDirectory.ReadJson<TrainMetrics>(metricsFile);
            if (cached.Epochs == recipe.Train.Epochs && cached.Seed == recipe.Train.Seed)
            {
                AnsiConsole.MarkupLine(Markup.Escape($"using the trained {cached.Model} in {recipe.OutDir} (delete it to train again)"));
                return cached;
            }
            // The demo's own baseline, trained for another recipe: replaced.
            return TrainCommand.Run(recipe with { Force = true });
        }
        return TrainCommand.Run(recipe with { Resume = File.Exists(Path.Combine(recipe.OutDir, "train_state.json")) });
    }
}
