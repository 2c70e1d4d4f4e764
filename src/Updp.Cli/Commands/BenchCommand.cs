using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Updp.Benchmarks;
using Updp.Models;

namespace Updp.Cli.Commands;

/// <summary><c>updp bench</c>: latency and throughput of a model in TorchSharp (random inputs).</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Registered model name (random weights are fine for latency)." };
        var checkpoint = CommonOptions.Checkpoint();
        var resolutions = new Option<int[]>("--resolution") { Description = "Input sides, e.g. 32,224.", DefaultValueFactory = _ => [32], CustomParser = CommonOptions.ParseIntList };
        var batches = new Option<int[]>("--batch") { Description = "Batch sizes, e.g. 1,32.", DefaultValueFactory = _ => [1, 32], CustomParser = CommonOptions.ParseIntList };
        var mode = new Option<string>("--mode") { Description = "infer (eval forward) or train (AdamW step).", DefaultValueFactory = _ => "infer" };
        mode.AcceptOnlyFromAmong("infer", "train");
        var inChans = new Option<int>("--in-chans") { Description = "Input channels (with --model).", DefaultValueFactory = _ => 1 };
        var numClasses = new Option<int>("--num-classes") { Description = "Classes (with --model).", DefaultValueFactory = _ => 10 };
        var stemStride = new Option<int?>("--stem-stride") { Description = "Stem stride (with --model; default: small-input setting at ≤ 64 px)." };
        var runs = new Option<int>("--runs") { Description = "Timed runs per setting.", DefaultValueFactory = _ => 20 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed runs first.", DefaultValueFactory = _ => 3 };
        var merged = MergedOption.Create("before timing");
        var sideBySide = new Option<bool>("--side-by-side")
        {
            Description = "With --merged: time the original and the merged model in alternating runs and report their ratio (robust to a changing load).",
        };
        var json = new Option<bool>("--json") { Description = "Print JSON." };
        var threads = CommonOptions.Threads();
        var command = new Command("bench", "Measure latency (median, p10, p90 ms) and images/s in TorchSharp.")
        {
            model, checkpoint, resolutions, batches, mode, inChans, numClasses, stemStride, merged, sideBySide, runs, warmup, json, threads,
        };
        command.SetAction(parse =>
        {
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            var paired = parse.GetValue(sideBySide);
            if (paired && (parse.GetValue(merged) is null || parse.GetValue(mode) == "train"))
            {
                throw new ArgumentException("--side-by-side compares the original model with its --merged form in infer mode: give --merged BLOCKS and not --mode train");
            }
            var rows = new JsonArray();
            var table = new Table().AddColumns("model", "mode", "resolution", "batch", "median ms", "p10 ms", "p90 ms", "images/s");
            if (paired)
            {
                table.AddColumn("merged / original");
            }
            foreach (var resolution in parse.GetValue(resolutions)!)
            {
                ImageClassifier Build() => ModelLoading.FromOptions(parse.GetValue(checkpoint), parse.GetValue(model),
                    parse.GetValue(inChans), parse.GetValue(numClasses), parse.GetValue(stemStride), resolution);
                using var classifier = Build();
                using var original = paired ? Build() : null;
                var mergedBlocks = MergedOption.Apply(classifier, parse.GetValue(merged), resolution);
                var name = mergedBlocks.Count == 0 ? classifier.Config.Name : $"{classifier.Config.Name} (merged {string.Join(",", mergedBlocks)})";
                void AddRow(string display, IReadOnlyList<int> blocks, int batch, LatencyStats stats, double? ratio)
                {
                    string[] cells = [display, parse.GetValue(mode)!, $"{resolution}", $"{batch}",
                        $"{stats.MedianMs:F2}", $"{stats.P10Ms:F2}", $"{stats.P90Ms:F2}", $"{stats.ImagesPerSecond:F0}"];
                    table.AddRow(paired ? [.. cells, ratio is { } r ? $"{r:F2}" : ""] : cells);
                    var row = new JsonObject
                    {
                        ["model"] = classifier.Config.Name,
                        ["merged"] = new JsonArray(blocks.Select(b => (JsonNode)b).ToArray()),
                        ["engine"] = "torchsharp",
                        ["mode"] = parse.GetValue(mode),
                        ["resolution"] = resolution,
                        ["batch"] = batch,
                        ["median_ms"] = stats.MedianMs,
                        ["p10_ms"] = stats.P10Ms,
                        ["p90_ms"] = stats.P90Ms,
                        ["images_per_second"] = stats.ImagesPerSecond,
                        ["runs"] = stats.Runs,
                        ["threads"] = TorchSharp.torch.get_num_threads(),
                    };
                    if (ratio is { } median)
                    {
                        row["ratio_to_original"] = median;
                    }
                    rows.Add(row);
                }
                foreach (var batch in parse.GetValue(batches)!)
                {
                    if (original is not null)
                    {
                        var pair = PairedBenchmark.Inference(original, classifier, batch, resolution, parse.GetValue(warmup), parse.GetValue(runs));
                        AddRow(original.Config.Name, [], batch, pair.First, null);
                        AddRow(name, mergedBlocks, batch, pair.Second, pair.MedianRatio);
                        continue;
                    }
                    var stats = parse.GetValue(mode) == "train"
                        ? TorchSharpBenchmark.TrainStep(classifier, batch, resolution, parse.GetValue(warmup), parse.GetValue(runs))
                        : TorchSharpBenchmark.Inference(classifier, batch, resolution, parse.GetValue(warmup), parse.GetValue(runs));
                    AddRow(name, mergedBlocks, batch, stats, null);
                }
            }
            if (parse.GetValue(json))
            {
                Console.WriteLine(rows.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            }
            else
            {
                table.Caption($"TorchSharp, {TorchSharp.torch.get_num_threads()} threads, {parse.GetValue(runs)} runs after {parse.GetValue(warmup)} warm-up");
                AnsiConsole.Write(table);
            }
            return 0;
        });
        return command;
    }
}
