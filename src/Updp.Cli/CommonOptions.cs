using System.CommandLine;

namespace Updp.Cli;

/// <summary>Options shared by several verbs, declared once.</summary>
internal static class CommonOptions
{
    public static Option<string?> Checkpoint() =>
        new("--checkpoint") { Description = "Model file: our .safetensors (+ .json sidecar), or a PyTorch state dict (.pt/.pth/.safetensors) with --model." };

    public static Option<string?> Model() =>
        new("--model") { Description = "Model name (see `updp models`); needed for state dicts without a sidecar." };

    public static Option<string> Data() =>
        new("--data") { Description = "fashion-mnist, mnist, or a directory holding the four idx files.", DefaultValueFactory = _ => "fashion-mnist" };

    public static Option<int> Seed() => new("--seed") { Description = "Random seed (initialisation, data order, augmentation, validation split)." };

    public static Option<int?> Threads() => new("--threads") { Description = "Intra-op threads for libtorch (default: all cores)." };

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

    public static void ApplyThreads(int? threads)
    {
        if (threads is int n)
        {
            if (n < 1)
            {
                throw new ArgumentException($"--threads must be ≥ 1, got {n}");
            }
            TorchSharp.torch.set_num_threads(n);
        }
    }
}
