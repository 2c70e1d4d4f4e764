using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Updp.Data;
using Updp.Training;

namespace Updp.Cli.Commands;

/// <summary><c>updp eval</c>: top-1 on the test split.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        checkpoint.Required = true;
        var model = CommonOptions.Model();
        var data = CommonOptions.Data();
        var inputSize = new Option<int>("--input-size") { Description = "Input side for checkpoints without a sidecar.", DefaultValueFactory = _ => 32 };
        var batch = new Option<int>("--batch-size") { Description = "Evaluation batch size.", DefaultValueFactory = _ => 256 };
        var json = new Option<bool>("--json") { Description = "Print a JSON object." };
        var threads = CommonOptions.Threads();
        var command = new Command("eval", "Top-1 accuracy of a checkpoint on the test split.")
        {
            checkpoint, model, data, inputSize, batch, json, threads,
        };
        command.SetAction(parse =>
        {
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            var path = parse.GetValue(checkpoint)!;
            var loaded = ModelLoading.Load(path, parse.GetValue(model));
            using var classifier = loaded.Model;
            var splits = DatasetCatalog.Resolve(parse.GetValue(data)!).LoadSplits();
            var preprocessing = loaded.Meta?.Preprocessing ?? Preprocessing.For(splits.Test, splits.Normalization, parse.GetValue(inputSize));
            if (splits.Test.ClassCount != classifier.Config.NumClasses)
            {
                throw new ArgumentException($"'{path}' has {classifier.Config.NumClasses} classes but the test set has {splits.Test.ClassCount}");
            }
            var result = Evaluator.Evaluate(classifier, TrainingRun.EvalLoader(splits.Test, preprocessing, parse.GetValue(batch)).Epoch(0));
            if (parse.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["checkpoint"] = path,
                    ["model"] = classifier.Config.Name,
                    ["top1"] = result.Top1,
                    ["loss"] = result.Loss,
                    ["images"] = result.Images,
                }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            }
            else
            {
                AnsiConsole.MarkupLine(Markup.Escape(
                    $"{classifier.Config.Name} on {parse.GetValue(data)} test ({result.Images} images): top-1 {result.Top1:P2}, loss {result.Loss:F4}"));
            }
            return 0;
        });
        return command;
    }
}
