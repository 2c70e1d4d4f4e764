using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Updp.Models;

namespace Updp.Cli.Commands;

/// <summary><c>updp info</c>: prunable blocks with their parameters and MACs.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Registered model name (see `updp models`)." };
        var checkpoint = CommonOptions.Checkpoint();
        var inputSize = new Option<int>("--input-size") { Description = "Square input resolution for MACs.", DefaultValueFactory = _ => 224 }.Range(DataCliOptions.MinInputSize, DataCliOptions.MaxInputSize);
        var inChans = new Option<int>("--in-chans") { Description = "Input channels.", DefaultValueFactory = _ => 3 }.Range(1, 64);
        var numClasses = new Option<int>("--num-classes") { Description = "Number of classes.", DefaultValueFactory = _ => 1000 }.Range(1, 1_000_000);
        var stemStride = new Option<int?>("--stem-stride") { Description = "Stem stride; default: the family's, or its small-input setting when --input-size ≤ 64." }.Range(1, 32);
        var merged = MergedOption.Create("before counting");
        var json = new Option<bool>("--json") { Description = "Print a JSON object instead of a table." };
        var command = new Command("info", "Show a model's prunable blocks (index, stage, params, MACs) and totals.")
        {
            model, checkpoint, inputSize, inChans, numClasses, stemStride, merged, json,
        };
        command.SetAction(parse =>
        {
            var size = parse.GetValue(inputSize);
            var classifier = ModelLoading.FromOptions(parse.GetValue(checkpoint), parse.GetValue(model),
                parse.GetValue(inChans), parse.GetValue(numClasses), parse.GetValue(stemStride), size);
            MergedOption.Apply(classifier, parse.GetValue(merged), size);
            var profile = ModelProfiler.Profile(classifier, size);
            if (parse.GetValue(json))
            {
                Console.WriteLine(ToJson(classifier, profile).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            var table = new Table().AddColumns("block", "stage", "path", "params", "MACs");
            foreach (var b in profile.Blocks)
            {
                table.AddRow(b.Index.ToString(), b.Stage.ToString(), b.Path, b.Params.ToString("N0"), b.Macs.ToString("N0"));
            }
            table.Caption($"{classifier.Config.Name} at {size}×{size}×{classifier.Config.InChans}, {classifier.Config.NumClasses} classes: " +
                $"{profile.Params:N0} params, {profile.Macs:N0} MACs ({profile.Blocks.Sum(b => b.Params):N0} params in {profile.Blocks.Count} prunable blocks)");
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static JsonObject ToJson(ImageClassifier model, ModelProfile profile) => new()
    {
        ["model"] = model.Config.Name,
        ["input_size"] = profile.InputSize,
        ["in_chans"] = model.Config.InChans,
        ["num_classes"] = model.Config.NumClasses,
        ["params"] = profile.Params,
        ["macs"] = profile.Macs,
        ["blocks"] = new JsonArray(profile.Blocks.Select(b => (JsonNode)new JsonObject
        {
            ["index"] = b.Index,
            ["stage"] = b.Stage,
            ["path"] = b.Path,
            ["params"] = b.Params,
            ["macs"] = b.Macs,
        }).ToArray()),
    };
}
