using System.CommandLine;
using Spectre.Console;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Cli.Commands;

/// <summary>
/// <c>updp merge</c> (stage 4): replaces every fully pruned block (λ = 1) by its merged form and
/// verifies the merged model against the unmerged one on real and random inputs; a failed check is an error.
/// </summary>
internal static class MergeCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        checkpoint.Required = true;
        var model = CommonOptions.Model();
        var outPath = new Option<string>("--out") { Description = "Merged checkpoint to write (.safetensors).", Required = true }.OutputPath(isDirectory: false);
        var data = CommonOptions.Data();
        var force = CommonOptions.Force();
        var images = new Option<int>("--check-images") { Description = "Real test images the merge is checked on.", DefaultValueFactory = _ => 256 }.Range(0, 1_000_000);
        var device = CommonOptions.Device();
        var command = new Command("merge", "Merge pruned blocks into smaller layers and verify the result (stage 4).")
        {
            checkpoint, model, outPath, data, images, force, device,
        };
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            var target = parse.GetValue(outPath)!;
            if (!target.EndsWith(Checkpoint.WeightsExtension, StringComparison.OrdinalIgnoreCase))
            {
                throw new ArgumentException($"--out must be a {Checkpoint.WeightsExtension} file, got '{target}'");
            }
            var input = parse.GetValue(checkpoint)!;
            OutputFiles.Check("--out", [target, Checkpoint.SidecarPath(target)], parse.GetValue(force), input, Checkpoint.SidecarPath(input));
            var loaded = ModelLoading.Load(parse.GetValue(checkpoint), parse.GetValue(model), on);
            using var classifier = loaded.Model;
            var before = ModelProfiler.CountParameters(classifier);
            var inputs = ModelLoading.CheckInputs(parse.GetValue(data)!, loaded.Meta, classifier, parse.GetValue(images));
            var report = Merger.MergeAll(classifier, inputs);
            if (report.MergedBlocks.Count == 0 && report.DroppedBlocks.Count == 0)
            {
                throw new ArgumentException($"'{parse.GetValue(checkpoint)}' has no fully pruned (λ = 1) blocks to merge");
            }
            var metrics = new Dictionary<string, double>(loaded.Meta?.Metrics ?? new Dictionary<string, double>())
            {
                ["merge_max_abs_diff"] = report.MaxAbsDiff,
                ["merge_tolerance"] = report.Tolerance,
            };
            Checkpoint.Save(classifier, target, PrunedModels.Describe(classifier, (loaded.Meta ?? new CheckpointMeta()) with { Metrics = metrics, Created = null }));
            AnsiConsole.MarkupLine(Markup.Escape(
                $"merged blocks {string.Join(",", report.MergedBlocks)}" +
                (report.DroppedBlocks.Count > 0 ? $", dropped {string.Join(",", report.DroppedBlocks)} (faded out, docs/METHOD.md#progressive-drop)" : "") + $": {before:N0} → {ModelProfiler.CountParameters(classifier):N0} params; " +
                $"max |Δ| {report.MaxAbsDiff:G3} ≤ {report.Tolerance:G3} on {report.Batches} batches (real and random)"));
            AnsiConsole.MarkupLine(Markup.Escape($"wrote {target}"));
            return 0;
        });
        return command;
    }
}
