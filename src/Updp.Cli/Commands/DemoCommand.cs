using System.CommandLine;
using Spectre.Console;
using Updp.Training;

namespace Updp.Cli.Commands;

/// <summary>
/// <c>updp demo</c>: the main job on the built-in default. Trains the convnext_atto baseline on
/// Fashion-MNIST (cached: a finished run is reused, an interrupted one resumed) and reports it.
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

    public static Command Create()
    {
        var outDir = new Option<string>("--out") { Description = "Directory for the demo's runs.", DefaultValueFactory = _ => Path.Combine("runs", "demo") };
        var epochs = new Option<int>("--epochs") { Description = "Baseline training epochs.", DefaultValueFactory = _ => DefaultEpochs };
        var seed = CommonOptions.Seed();
        var threads = CommonOptions.Threads();
        var command = new Command("demo", "Train the convnext_atto baseline on Fashion-MNIST (cached) and report its test top-1.")
        {
            outDir, epochs, seed, threads,
        };
        command.SetAction(parse =>
        {
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            var started = DateTime.UtcNow;
            var recipe = BaselineRecipe(Path.Combine(parse.GetValue(outDir)!, "baseline"), parse.GetValue(epochs), parse.GetValue(seed));
            var baseline = CachedOrTrain(recipe);

            var table = new Table().AddColumns("model", "test top-1", "params", "MACs (32×32)", "epochs", "train time");
            table.AddRow(baseline.Model, $"{baseline.Top1:P2}", $"{baseline.Params:N0}", $"{baseline.Macs:N0}", $"{baseline.Epochs}", $"{baseline.TrainSeconds / 60:F1} min");
            table.Caption(Markup.Escape($"Fashion-MNIST, {recipe.OutDir}; demo took {(DateTime.UtcNow - started).TotalMinutes:F1} min"));
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    /// <summary>Reuses a finished run with the same recipe, resumes an interrupted one, or trains.</summary>
    public static TrainMetrics CachedOrTrain(TrainRunOptions recipe)
    {
        var run = new RunDirectory(recipe.OutDir, (_, _) => new Checkpoints.CheckpointMeta(), resume: true);
        if (File.Exists(run.MetricsFile))
        {
            var cached = RunDirectory.ReadJson<TrainMetrics>(run.MetricsFile);
            if (cached.Epochs == recipe.Train.Epochs && cached.Seed == recipe.Train.Seed)
            {
                AnsiConsole.MarkupLine(Markup.Escape($"using the trained {cached.Model} in {recipe.OutDir} (delete it to train again)"));
                return cached;
            }
        }
        return TrainCommand.Run(recipe with { Resume = File.Exists(run.StateFile) });
    }
}
