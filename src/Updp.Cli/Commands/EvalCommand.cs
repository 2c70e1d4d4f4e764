using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Updp.Data;
using Updp.Training;

namespace Updp.Cli.Commands;

/// <summary><c>updp eval</c>: top-1 on the test split (val when the data set has none), per class, with the confusion matrix.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        checkpoint.Required = true;
        var model = CommonOptions.Model();
        var dataOptions = new DataCliOptions(withPreprocessing: false);
        var inputSize = new Option<int?>("--input-size") { Description = "Input side for checkpoints without a sidecar (default 32 for MNIST-style data, 224 for image folders)." }.Range(DataCliOptions.MinInputSize, DataCliOptions.MaxInputSize);
        var batch = new Option<int>("--batch-size") { Description = "Evaluation batch size.", DefaultValueFactory = _ => 256 }.Range(1, OptionRules.MaxBatch);
        var json = new Option<bool>("--json") { Description = "Print a JSON object (with per-class top-1 and the confusion matrix)." };
        var threads = CommonOptions.Threads();
        var device = CommonOptions.Device();
        var command = new Command("eval", "Top-1 accuracy of a checkpoint on the test split (val when the data set has none), per class and as a confusion matrix.")
        {
            checkpoint, model, inputSize, batch, json, threads, device,
        };
        dataOptions.AddTo(command);
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            var path = parse.GetValue(checkpoint)!;
            var data = parse.GetValue(dataOptions.Data)!;
            var loaded = ModelLoading.Load(path, parse.GetValue(model), on);
            using var classifier = loaded.Model;
            var options = dataOptions.Read(parse, parse.GetValue(inputSize)) with { Channels = (int)classifier.Config.InChans, TestOnly = true };
            var run = TrainingRun.LoadData(data, new ValidationSplit(null, 0), preprocessing: loaded.Meta?.Preprocessing, dataOptions: options);
            var splits = run.Splits;
            if (splits.Test.ClassCount != classifier.Config.NumClasses)
            {
                throw new ArgumentException($"'{path}' has {classifier.Config.NumClasses} classes but the data set '{data}' has {splits.Test.ClassCount}");
            }
            var classes = splits.Test.ClassNames;
            if (loaded.Meta?.Classes is { Count: > 0 } recorded && !recorded.SequenceEqual(classes))
            {
                throw new ArgumentException(
                    $"'{path}' was trained on classes {string.Join(", ", recorded.Take(5))}… but '{data}' has {string.Join(", ", classes.Take(5))}…; they must be the same, in the same order");
            }
            var result = Evaluator.Evaluate(classifier, TrainingRun.EvalLoader(splits.Test, run.Preprocessing, parse.GetValue(batch), on).Epoch(0), classes.Count);
            var confusion = result.Confusion!;
            var perClass = result.PerClassTop1!;
            if (parse.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["checkpoint"] = path,
                    ["model"] = classifier.Config.Name,
                    ["split"] = splits.TestName,
                    ["top1"] = result.Top1,
                    ["loss"] = result.Loss,
                    ["images"] = result.Images,
                    ["skipped_images"] = splits.SkippedImages.Count,
                    ["classes"] = new JsonArray(classes.Select(c => (JsonNode)c).ToArray()),
                    ["per_class_top1"] = new JsonArray(perClass.Select(v => (JsonNode?)(double.IsNaN(v) ? null : v)).ToArray()),
                    ["confusion"] = new JsonArray(confusion.Select(row => (JsonNode)new JsonArray(row.Select(v => (JsonNode)v).ToArray())).ToArray()),
                }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            AnsiConsole.MarkupLine(Markup.Escape(
                $"{classifier.Config.Name} on {data} {splits.TestName} ({result.Images} images): top-1 {result.Top1:P2}, loss {result.Loss:F4}"
                + (splits.TestIsValidation ? " (the data set has no test split; this is the validation split)" : "")));
            if (classes.Count <= 40)
            {
                var table = new Table().AddColumn("true \\ predicted");
                foreach (var c in classes)
                {
                    table.AddColumn(new TableColumn(Markup.Escape(Short(c))).RightAligned());
                }
                table.AddColumn(new TableColumn("top-1").RightAligned());
                for (var t = 0; t < classes.Count; t++)
                {
                    table.AddRow([Markup.Escape(classes[t]), .. confusion[t].Select(v => $"{v}"), double.IsNaN(perClass[t]) ? "–" : $"{perClass[t]:P1}"]);
                }
                AnsiConsole.Write(table);
            }
            else
            {
                AnsiConsole.MarkupLine(Markup.Escape($"{classes.Count} classes: per-class top-1 and the confusion matrix are in --json"));
            }
            if (splits.SkippedImages.Count > 0)
            {
                AnsiConsole.MarkupLine(Markup.Escape($"skipped {splits.SkippedImages.Count} bad image files (--skip-bad-images)"));
            }
            return 0;
        });
        return command;
    }

    private static string Short(string name) => name.Length <= 10 ? name : name[..9] + "…";
}
