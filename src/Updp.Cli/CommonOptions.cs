using System.CommandLine;
using Updp.Pruning;
using Updp.Training;

namespace Updp.Cli;

/// <summary>Options shared by several verbs, declared once.</summary>
internal static class CommonOptions
{
    public static Option<string?> Checkpoint() =>
        new Option<string?>("--checkpoint") { Description = "Model file: our .safetensors (+ .json sidecar), or a PyTorch state dict (.pt/.pth/.safetensors) with --model." }.ExistingFile();

    public static Option<string?> Model() =>
        new Option<string?>("--model") { Description = "Model name (see `updp models`); needed for state dicts without a sidecar." };

    public static Option<string> Data() =>
        new Option<string>("--data") { Description = "fashion-mnist, mnist, a directory of idx files, an image folder (DIR/train/<class>/*, optional val/ and test/) or a CSV list of path,label rows (docs/DATA.md).", DefaultValueFactory = _ => "fashion-mnist" };

    public static Option<int> Seed() => new Option<int>("--seed") { Description = "Random seed (initialisation, data order, augmentation, validation split)." }.Range(0, int.MaxValue);

    /// <summary>Permission to replace an output that exists (a file, or a run in the output directory).</summary>
    public static Option<bool> Force() =>
        new Option<bool>("--force") { Description = "Replace the output if it exists (a file, or a finished or interrupted run in --out)." };

    public static Option<int?> Threads() => new Option<int?>("--threads") { Description = "Intra-op threads for libtorch (default: all cores)." }.Range(1, OptionRules.MaxThreads);

    public static Option<string> Device() => new("--device")
    {
        Description = "Where TorchSharp runs the models: cpu, cuda or cuda:N (needs the CUDA libtorch package, docs/DEVICES.md); ONNX Runtime stays on the CPU.",
        DefaultValueFactory = _ => "cpu",
    };

    /// <summary>Parses "1,32" (and repeated or space-separated values) into positive integers.</summary>
    public static int[] ParseIntList(System.CommandLine.Parsing.ArgumentResult result)
    {
        var values = new List<int>();
        foreach (var token in result.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            if (!int.TryParse(token, out var v) || v < 1)
            {
                result.AddError($"{result.Argument.Name}: '{token}' is not a positive integer");
                return [];
            }
            values.Add(v);
        }
        return [.. values];
    }

    // Options of the training stages (supernet, finetune, prune), declared once.
    public static Option<int> BatchSize() => new Option<int>("--batch-size") { Description = "Mini-batch size.", DefaultValueFactory = _ => new TrainOptions().BatchSize }.Range(1, OptionRules.MaxBatch);

    public static Option<double> LearningRate(double defaultValue) =>
        new Option<double>("--lr") { Description = "Peak learning rate (AdamW, cosine schedule).", DefaultValueFactory = _ => defaultValue }.Range(0, 10, minOpen: true);

    public static Option<int?> TrainLimit() => new Option<int?>("--train-limit") { Description = "Train on the first N training images only (quick runs)." }.Range(1, int.MaxValue);

    public static Option<int?> MaxSteps() => new Option<int?>("--max-steps") { Description = "Stop each epoch after N steps (quick runs)." }.Range(1, int.MaxValue);

    public static Option<int?> ValSize() =>
        new Option<int?>("--val-size") { Description = "Validation images carved from the training set (default: what the checkpoint's sidecar records, else 5000)." }.Range(0, int.MaxValue);

    public static Option<int> CalibrationBatches() =>
        new Option<int>("--calibration-batches") { Description = "Training batches (of 128) batch-norm statistics are calibrated on.", DefaultValueFactory = _ => 10 }.Range(1, 10_000);

    public static Option<string?> Distill() =>
        new Option<string?>("--distill") { Description = "Distil from this teacher checkpoint (usually the baseline): loss = (1−α)·CE + α·T²·KL." }.ExistingFile();

    public static Option<double> DistillAlpha() =>
        new Option<double>("--distill-alpha") { Description = "α, the weight of the distillation term.", DefaultValueFactory = _ => new DistillationOptions { Teacher = "" }.Alpha }.Range(0, 1);

    public static Option<double> DistillTemperature() =>
        new Option<double>("--distill-temperature") { Description = "T, the distillation temperature.", DefaultValueFactory = _ => new DistillationOptions { Teacher = "" }.Temperature }.Range(0, 100, minOpen: true);

    public static DistillationOptions? Distillation(string? teacher, double alpha, double temperature) =>
        teacher is null ? null : new DistillationOptions { Teacher = teacher, Alpha = alpha, Temperature = temperature };

    /// <summary>
    /// <c>--method</c> of the stages before fine-tuning (<c>supernet</c>, <c>search</c>): which block
    /// forms the supernet is trained for and the search chooses among (docs/METHOD.md#mixed).
    /// </summary>
    public static Option<string> SpaceMethod(string stage) => new("--method")
    {
        Description = $"updp: every {stage} block is merged (what updp, direct and drop fine-tune); " +
            $"mixed: each {stage} block is merged or, where its family allows dropping it, dropped (see `updp finetune --method mixed`).",
        DefaultValueFactory = _ => "updp",
    };

    /// <summary>updp or mixed (<see cref="SpaceMethod"/>); anything else is an input error naming the value.</summary>
    public static SearchSpace ParseSpace(string? value) => value?.ToLowerInvariant() switch
    {
        "updp" => SearchSpace.Merge,
        "mixed" => SearchSpace.Mixed,
        "direct" or "drop" => throw new ArgumentException(
            $"--method '{value}': expected updp or mixed here; direct and drop are fine-tuning methods that start from a updp supernet and search"),
        _ => throw new ArgumentException($"--method '{value}': expected updp or mixed"),
    };

    /// <summary>
    /// Parses a list of 0-based block indices ("3,5,8"); an ArgumentException (exit code 2) names
    /// the option, the value and what was expected.
    /// </summary>
    public static int[] ParseBlocks(string option, string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            throw new ArgumentException($"{option} needs block indices, e.g. {option} 3,5,8 (0-based, as `updp info` lists them)");
        }
        var blocks = new List<int>();
        foreach (var token in value.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(token, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var index))
            {
                throw new ArgumentException(
                    $"{option} '{value}': '{token}' is not a block index; expected comma-separated 0-based block indices, e.g. 3,5,8");
            }
            blocks.Add(index);
        }
        return [.. blocks];
    }

    /// <summary>
    /// The device --device names, checked before any work starts: an ArgumentException (exit code 2,
    /// one line) when the value is not cpu, cuda or cuda:N, or TorchSharp reports no such device.
    /// </summary>
    public static TorchSharp.torch.Device ApplyDevice(string? value)
    {
        TorchSharp.torch.Device device;
        try
        {
            device = Devices.Parse(value ?? "cpu");
        }
        catch (ArgumentException)
        {
            throw new ArgumentException($"--device '{value}': expected cpu, cuda or cuda:N");
        }
        return Devices.Require(device, $"--device {value}");
    }

    public static void ApplyThreads(int? threads)
    {
        if (threads is int n)
        {
            TorchSharp.torch.set_num_threads(n);
        }
    }
}
