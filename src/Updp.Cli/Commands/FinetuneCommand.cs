using System.CommandLine;
using Spectre.Console;
using Updp.Pruning;
using Updp.Training;

namespace Updp.Cli.Commands;

/// <summary>
/// <c>updp finetune</c> (stage 3): trains the subnet that prunes the given blocks, by UPDP's λ ramp
/// or one of the comparison methods; writes OUT/pruned.safetensors (ready for <c>updp merge</c>) and OUT/metrics.json.
/// </summary>
internal static class FinetuneCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        checkpoint.Description = "The initial weights F: the supernet (OUT/supernet.safetensors of `updp supernet`) or the baseline; see --init.";
        checkpoint.Required = true;
        var dataOptions = new DataCliOptions(withPreprocessing: false);
        var data = dataOptions.Data;
        var pruned = new Option<string>("--pruned") { Description = "S: the blocks to prune, e.g. 3,5,8 (0-based, e.g. the first candidate of search.json).", Required = true };
        var epochs = new Option<int>("--epochs") { Description = "Fine-tuning epochs.", DefaultValueFactory = _ => FinetuneOptions.DefaultRecipe.Epochs }.Range(1, OptionRules.MaxEpochs);
        var method = new Option<string>("--method")
        {
            Description = "updp: λ rises 0→1 over the first --ramp of training; direct: λ=1 from the start; drop: the blocks are removed; " +
                "mixed: the --dropped blocks fade out, (1−λ)·block + λ·dropped form (for an identity shortcut the residual branch scaled by 1−λ), while the other --pruned blocks ramp as in updp, over the same --ramp.",
            DefaultValueFactory = _ => "updp",
        };
        var dropped = new Option<string?>("--dropped")
        {
            Description = "mixed only: which of the --pruned blocks are dropped (the others are merged), e.g. 5 (the \"drop\" forms of a mixed search.json candidate).",
        };
        var init = new Option<string?>("--init")
        {
            Description = "supernet|baseline: the kind of checkpoint --checkpoint must be (checked: a supernet has blocks in progressive form, " +
                "a baseline none); default: either, recorded in metrics.json. For a fair comparison give every method the same --checkpoint, data, epochs, seed and --pruned.",
        };
        var ramp = new Option<double>("--ramp") { Description = "updp and mixed: the fraction of training over which λ rises linearly per step.", DefaultValueFactory = _ => LambdaRamp.DefaultRamp }.Range(0, 1);
        var outDir = new Option<string>("--out") { Description = "Run directory: pruned.safetensors (+ .json), metrics.json, resume state.", Required = true }.OutputPath(isDirectory: true);
        var batch = CommonOptions.BatchSize();
        var lr = CommonOptions.LearningRate(FinetuneOptions.DefaultRecipe.LearningRate);
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
        var command = new Command("finetune",
            "Stage 3: fine-tune the subnet pruning --pruned from --checkpoint; writes OUT/pruned.safetensors (λ=1, ready for `updp merge`) and OUT/metrics.json (test top-1, merged params and MACs).")
        {
            checkpoint, data, pruned, epochs, method, dropped, init, ramp, outDir, batch, lr, seed, trainLimit, maxSteps, valSize, calibration,
            distill, alpha, temperature, resume, force, threads, device,
        };
        command.Options.Add(dataOptions.SkipBadImages);
        command.Options.Add(dataOptions.Cache);
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            var finetuneMethod = ParseMethod(parse.GetValue(method));
            var droppedBlocks = parse.GetValue(dropped) is { } list ? CommonOptions.ParseBlocks("--dropped", list) : null;
            if (droppedBlocks is not null && finetuneMethod != FinetuneMethod.Mixed)
            {
                throw new ArgumentException($"--dropped is for --method mixed, not {parse.GetValue(method)}");
            }
            var options = new FinetuneOptions
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
                Blocks = CommonOptions.ParseBlocks("--pruned", parse.GetValue(pruned)),
                Method = finetuneMethod,
                Dropped = droppedBlocks,
                Init = parse.GetValue(init) is { } kind ? ParseInit(kind) : null,
                Ramp = parse.GetValue(ramp),
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
            OutputFiles.CheckRunDirectory(options.OutDir, Training.RunDirectory.RunFilesOf(options.OutDir, ProgressiveFinetune.CheckpointName),
                options.Checkpoint, options.Distillation?.Teacher);
            AnsiConsole.MarkupLine(Markup.Escape(
                $"finetune ({options.Method.ToString().ToLowerInvariant()}) blocks {string.Join(",", options.Blocks)}" +
                (options.Dropped is { Count: > 0 } d ? $" (dropping {string.Join(",", d)})" : "") + $" from {options.Checkpoint} on {options.Settings.Data}: " +
                $"{options.Train.Epochs} epochs (batch {options.Train.BatchSize}, lr {options.Train.LearningRate:G3}, seed {options.Train.Seed}) → {options.OutDir}"));
            var result = ConsoleProgress.Train("finetune", (progress, epochDone) => ProgressiveFinetune.Run(options, progress, epochDone,
                Interruption.Stoppable("the last finished epoch is saved; run the same command with --resume to continue from it")));
            AnsiConsole.MarkupLine(Markup.Escape(
                $"{result.Method}{(result.Forms is null ? "" : $" ({result.Assignment})")} from the {result.Init}: test top-1 {result.Top1:P2} (best epoch {result.BestEpoch}, val top-1 {result.ValTop1:P2}); " +
                $"merged {result.Params:N0} params, {result.Macs:N0} MACs (unpruned {result.Original.Params:N0}, {result.Original.Macs:N0}); " +
                $"merge check max |Δ| {result.MergeMaxAbsDiff:G3}"));
            AnsiConsole.MarkupLine(Markup.Escape($"wrote {result.Checkpoint} and {Path.Combine(options.OutDir, "metrics.json")}"));
            return 0;
        });
        return command;
    }

    /// <summary>updp, direct, drop or mixed; anything else is an input error naming the value.</summary>
    public static FinetuneMethod ParseMethod(string? value) => value?.ToLowerInvariant() switch
    {
        "updp" => FinetuneMethod.Updp,
        "direct" => FinetuneMethod.Direct,
        "drop" => FinetuneMethod.Drop,
        "mixed" => FinetuneMethod.Mixed,
        _ => throw new ArgumentException($"--method '{value}': expected updp, direct, drop or mixed"),
    };

    private static FinetuneInit ParseInit(string value) => value.ToLowerInvariant() switch
    {
        "supernet" => FinetuneInit.Supernet,
        "baseline" => FinetuneInit.Baseline,
        _ => throw new ArgumentException($"--init '{value}': expected supernet or baseline"),
    };
}
