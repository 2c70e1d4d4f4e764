using System.CommandLine;
using Spectre.Console;
using Updp.Pruning;
using Updp.Training;

namespace Updp.Cli.Commands;

/// <summary>
/// <c>updp supernet</c> (stage 1): trains one set of weights from the baseline that works with any
/// subset of at most K_max blocks pruned; writes OUT/supernet.safetensors and OUT/metrics.json.
/// </summary>
internal static class SupernetCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        checkpoint.Description = "The baseline: an Updp checkpoint (.safetensors + .json sidecar), e.g. OUT/model.safetensors of `updp train`.";
        checkpoint.Required = true;
        var dataOptions = new DataCliOptions(withPreprocessing: false);
        var data = dataOptions.Data;
        var epochs = new Option<int>("--epochs") { Description = "Supernet training epochs.", DefaultValueFactory = _ => 3 }.Range(1, OptionRules.MaxEpochs);
        var maxPruned = new Option<int>("--max-pruned") { Description = "K_max: each step prunes a random subset of 0..K_max candidate blocks.", Required = true }.Range(1, 10_000);
        var candidates = new Option<string?>("--candidates") { Description = "Blocks that may be pruned, e.g. 1,2,3 (0-based; default: every block)." };
        var method = CommonOptions.SpaceMethod("sampled");
        var outDir = new Option<string>("--out") { Description = "Run directory: supernet.safetensors (+ .json), metrics.json, resume state.", Required = true }.OutputPath(isDirectory: true);
        var batch = CommonOptions.BatchSize();
        var lr = CommonOptions.LearningRate(FinetuneOptions.FineTuningLearningRate);
        var seed = CommonOptions.Seed();
        var trainLimit = CommonOptions.TrainLimit();
        var maxSteps = CommonOptions.MaxSteps();
        var valSize = CommonOptions.ValSize();
        var calibration = CommonOptions.CalibrationBatches();
        var distill = CommonOptions.Distill();
        var alpha = CommonOptions.DistillAlpha();
        var temperature = CommonOptions.DistillTemperature();
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted run in --out." };
        var force = CommonOptions.Force();
        var threads = CommonOptions.Threads();
        var device = CommonOptions.Device();
        var command = new Command("supernet",
            "Stage 1: train a supernet from a baseline; writes OUT/supernet.safetensors and OUT/metrics.json. " +
            "Each step runs a random subset of at most K_max candidate blocks pruned (λ=1); with --method mixed each drawn block that can be dropped is dropped instead with probability 1/2.")
        {
            checkpoint, data, epochs, maxPruned, candidates, method, outDir, batch, lr, seed, trainLimit, maxSteps, valSize, calibration,
            distill, alpha, temperature, resume, force, threads, device,
        };
        command.Options.Add(dataOptions.SkipBadImages);
        command.Options.Add(dataOptions.Cache);
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            var space = CommonOptions.ParseSpace(parse.GetValue(method));
            var options = new SupernetOptions
            {
                Checkpoint = parse.GetValue(checkpoint)!,
                Settings = new StageSettings
                {
                    Data = parse.GetValue(data)!,
                    DataOptions = dataOptions.Read(parse),
                    CalibrationBatches = parse.GetValue(calibration),
                    ValidationCount = parse.GetValue(valSize),
                    TrainLimit = parse.GetValue(trainLimit),
                    Device = on,
                },
                OutDir = parse.GetValue(outDir)!,
                MaxPruned = parse.GetValue(maxPruned),
                Space = space,
                Candidates = parse.GetValue(candidates) is { } list ? CommonOptions.ParseBlocks("--candidates", list) : null,
                Train = new TrainOptions
                {
                    Epochs = parse.GetValue(epochs),
                    BatchSize = parse.GetValue(batch),
                    LearningRate = parse.GetValue(lr),
                    Seed = parse.GetValue(seed),
                    MaxStepsPerEpoch = parse.GetValue(maxSteps),
                },
                Distillation = CommonOptions.Distillation(parse.GetValue(distill), parse.GetValue(alpha), parse.GetValue(temperature)),
                Resume = parse.GetValue(resume),
                Force = parse.GetValue(force),
            };
            OutputFiles.CheckRunDirectory(options.OutDir, Training.RunDirectory.RunFilesOf(options.OutDir, SupernetTraining.CheckpointName),
                options.Checkpoint, options.Distillation?.Teacher);
            AnsiConsole.MarkupLine(Markup.Escape(
                $"supernet{(space == SearchSpace.Mixed ? " (mixed: merge or drop)" : "")} from {options.Checkpoint} on {options.Settings.Data}: K_max {options.MaxPruned}, {options.Train.Epochs} epochs " +
                $"(batch {options.Train.BatchSize}, lr {options.Train.LearningRate:G3}, seed {options.Train.Seed}) → {options.OutDir}"));
            var result = ConsoleProgress.Train("supernet", (progress, epochDone) => SupernetTraining.Run(options, progress, epochDone,
                Interruption.Stoppable("the last finished epoch is saved; run the same command with --resume to continue from it")));
            AnsiConsole.MarkupLine(Markup.Escape(
                $"supernet over blocks {string.Join(",", result.Blocks)} (K_max {result.MaxPruned}" +
                (result.Droppable is { } droppable ? $"; droppable {string.Join(",", droppable)}" : "") + "): val top-1 {result.ValTop1:P2} with every block original, " +
                $"{result.CalibratedNorms} batch norms calibrated, {result.TrainSeconds:F0} s training"));
            AnsiConsole.MarkupLine(Markup.Escape($"wrote {result.Checkpoint} and {Path.Combine(options.OutDir, "metrics.json")}"));
            return 0;
        });
        return command;
    }
}
