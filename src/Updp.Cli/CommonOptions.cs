using System.CommandLine;

namespace Updp.Cli;

/// <summary>Options shared by several verbs, declared once.</summary>
internal static class CommonOptions
{
    public static Option<string?> Checkpoint() =>
        new("--checkpoint") { Description = "Model file: our .safetensors (+ .json sidecar), or a PyTorch state dict (.pt/.pth/.safetensors) with --model." };
}
