using System.CommandLine;
using Spectre.Console;
using Updp.Models;
using Updp.Training;

namespace Updp.Cli.Commands;

/// <summary><c>updp train</c>: train a classifier and write model.safetensors and metrics.json.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Registered model name (see `updp models`).", Required = true };
        var dataOptions = new DataCliOptions(withPreprocessing: true);
        var epochs = new Option<int>("--epochs") { Description = "Training epochs.", DefaultValueFactory = _ => new TrainOptions().Epochs }.Range(1, OptionRules.MaxEpochs);
        var outDir = new Option<string>("--out") { Description = "Run directory for checkpoints and metrics.", Required = true }.OutputPath(isDirectory: true);
        var batch = new Option<int>("--batch-size") { Description = "Mini-batch size.", DefaultValueFactory = _ => new TrainOptions().BatchSize }.Range(1, OptionRules.MaxBatch);
        var lr = new Option<double>("--lr") { Description = $"Peak learning rate (AdamW); {TrainOptions.PretrainedLearningRate:G} with --pretrained.", DefaultValueFactory = _ => new TrainOptions().LearningRate }.Range(0, 10, minOpen: true);
        var wd = new Option<double>("--weight-decay") { Description = "AdamW weight decay (not on norms, biases, layer scales).", DefaultValueFactory = _ => new TrainOptions().WeightDecay }.Range(0, 10);
        var warmup = new Option<double>("--warmup-epochs") { Description = "Linear warm-up length in epochs.", DefaultValueFactory = _ => new TrainOptions().WarmupEpochs }.Range(0, OptionRules.MaxEpochs);
        var smoothing = new Option<double>("--label-smoothing") { Description = "Label smoothing.", DefaultValueFactory = _ => new TrainOptions().LabelSmoothing }.Range(0, 1, maxOpen: true);
        var cropPadding = new Option<int>("--crop-padding") { Description = "Random-crop padding of the augmentation (0: no crop).", DefaultValueFactory = _ => Data.ImageTransform.DefaultCropPadding }.Range(0, 64);
        var noFlip = new Option<bool>("--no-flip") { Description = "No random horizontal flips." };
        var dropPath = new Option<double>("--drop-path") { Description = "Stochastic depth rate of the last block." }.Range(0, 1, maxOpen: true);
        var layerScaled = string.Join(", ", ModelFamilies.All.Where(f => f.HasLayerScale).Select(f => f.DisplayName));
        var lsInit = new Option<double?>("--ls-init") { Description = $"{layerScaled}: initial layer scale of a model trained from scratch (timm's 1e-6 suits long runs; short ones learn faster with 0.1)." }.Range(0, 10, minOpen: true);
        var seed = CommonOptions.Seed();
        var inputSize = new Option<int?>("--input-size") { Description = "Network input side (default 32 for MNIST-style data, zero-padded; 224 for image folders)." }.Range(DataCliOptions.MinInputSize, DataCliOptions.MaxInputSize);
        var stemStride = new Option<int?>("--stem-stride") { Description = "Stem stride (default: the family's small-input setting for inputs ≤ 64 px)." }.Range(1, 32);
        var valSize = new Option<int?>("--val-size") { Description = "Validation images carved from the training set (default 5000 for MNIST-style data, 10 % for image folders without val/)." }.Range(0, int.MaxValue);
        var trainLimit = new Option<int?>("--train-limit") { Description = "Train on the first N training images only." }.Range(1, int.MaxValue);
        var maxSteps = new Option<int?>("--max-steps") { Description = "Stop each epoch after N steps." }.Range(1, int.MaxValue);
        var init = new Option<string?>("--checkpoint") { Description = "Start from these weights as they are (our checkpoint or a PyTorch state dict with the data's classes)." }.ExistingFile();
        var pretrained = new Option<string?>("--pretrained") { Description = "Fine-tune from a timm/torchvision state dict (.pth/.safetensors, e.g. 1000 ImageNet classes): the classifier is re-initialised for the data's classes and the stem adapted to its channels." }.ExistingFile();
        var resume = new Option<bool>("--resume") { Description = "Continue an interrupted run in --out." };
        var force = CommonOptions.Force();
        var threads = CommonOptions.Threads();
        var device = CommonOptions.Device();
        var command = new Command("train", "Train a classifier; writes OUT/model.safetensors (best on validation) and OUT/metrics.json.")
        {
            model, epochs, outDir, batch, lr, wd, warmup, smoothing, cropPadding, noFlip, dropPath, lsInit, seed, inputSize, stemStride, valSize, trainLimit, maxSteps, init, pretrained, resume, force, threads, device,
        };
        dataOptions.AddTo(command);
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            if (parse.GetValue(init) is not null && parse.GetValue(pretrained) is not null)
            {
                throw new ArgumentException("give --checkpoint (weights as they are) or --pretrained (adapted to the data's classes), not both");
            }
            var options = new TrainRunOptions
            {
                ModelName = parse.GetValue(model)!,
                Data = parse.GetValue(dataOptions.Data)!,
                DataOptions = dataOptions.Read(parse, parse.GetValue(inputSize)),
                Pretrained = parse.GetValue(pretrained),
                OutDir = parse.GetValue(outDir)!,
                InputSize = parse.GetValue(inputSize),
                StemStride = parse.GetValue(stemStride),
                DropPathRate = parse.GetValue(dropPath),
                LayerScaleInit = parse.GetValue(lsInit),
                CropPadding = parse.GetValue(cropPadding),
                HorizontalFlip = !parse.GetValue(noFlip),
                ValidationCount = parse.GetValue(valSize),
                TrainLimit = parse.GetValue(trainLimit),
                InitCheckpoint = parse.GetValue(init),
                Resume = parse.GetValue(resume),
                Force = parse.GetValue(force),
                Device = on,
                Train = new TrainOptions
                {
                    Epochs = parse.GetValue(epochs),
                    BatchSize = parse.GetValue(batch),
                    // Pretrained weights want a smaller step than a random start; an explicit --lr always wins.
                    LearningRate = parse.GetValue(pretrained) is not null && parse.GetResult(lr) is null or { Implicit: true }
                        ? TrainOptions.PretrainedLearningRate
                        : parse.GetValue(lr),
                    WeightDecay = parse.GetValue(wd),
                    WarmupEpochs = parse.GetValue(warmup),
                    LabelSmoothing = parse.GetValue(smoothing),
                    Seed = parse.GetValue(seed),
                    MaxStepsPerEpoch = parse.GetValue(maxSteps),
                },
            };
            OutputFiles.CheckRunDirectory(options.OutDir, Training.RunDirectory.RunFilesOf(options.OutDir), options.InitCheckpoint, options.Pretrained);
            var metrics = Run(options);
            return metrics is null ? 1 : 0;
        });
        return command;
    }

    /// <summary>"N threads" on the CPU (as before devices), else the device.</summary>
    public static string Where(TorchSharp.torch.Device device) =>
        Devices.IsCpu(device) ? $"{TorchSharp.torch.get_num_threads()} threads" : Devices.Name(device);

    /// <summary>Trains with a progress display and prints the result; shared with <c>updp demo</c>.</summary>
    public static TrainMetrics Run(TrainRunOptions options)
    {
        AnsiConsole.MarkupLine(Markup.Escape(
            $"training {options.ModelName} on {options.Data} for {options.Train.Epochs} epochs (batch {options.Train.BatchSize}, lr {options.Train.LearningRate:G3}, " +
            $"seed {options.Train.Seed}, {Where(options.Device)}) → {options.OutDir}"));
        TrainingRun.TransferReported = t => AnsiConsole.MarkupLine(Markup.Escape(
            $"fine-tuning {t.Source.Name} ({t.Source.NumClasses} classes, {t.Source.InChans} channels) from {options.Pretrained}: "
            + (t.Replaced.Count == 0 ? "every tensor loaded as it is" : $"re-initialised {string.Join(", ", t.Replaced.Except(t.Adapted))}"
                + (t.Adapted.Count > 0 ? $"; adapted to {t.Model.Config.InChans} input channels: {string.Join(", ", t.Adapted)}" : ""))));
        var metrics = ConsoleProgress.Train(options.ModelName, (progress, epochDone) => TrainingRun.Run(options, progress, epochDone,
            Interruption.Stoppable("the last finished epoch is saved; run the same command with --resume to continue from it")));
        AnsiConsole.MarkupLine(Markup.Escape(
            $"{metrics.TestSplit} top-1 {metrics.Top1:P2} (best epoch {metrics.BestEpoch}, val top-1 {metrics.ValTop1:P2}), {metrics.Params:N0} params, " +
            $"{metrics.Macs:N0} MACs, {metrics.TrainSeconds:F0} s training"));
        if (metrics.SkippedImages > 0)
        {
            AnsiConsole.MarkupLine(Markup.Escape($"skipped {metrics.SkippedImages} bad image files (--skip-bad-images)"));
        }
        AnsiConsole.MarkupLine(Markup.Escape($"wrote {Path.Combine(options.OutDir, "model.safetensors")} and {Path.Combine(options.OutDir, "metrics.json")}"));
        return metrics;
    }
}
