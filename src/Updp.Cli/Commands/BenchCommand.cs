using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Updp.Benchmarks;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Pruning.Blocks;

namespace Updp.Cli.Commands;

/// <summary>
/// <c>updp bench</c>: latency and throughput (random inputs) in TorchSharp and ONNX Runtime, and the
/// speed-up of a pruned (merged) model over the unpruned one, measured side by side in one run.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Registered model name (random weights are fine for latency)." };
        var checkpoint = CommonOptions.Checkpoint();
        var pruned = new Option<string?>("--pruned") { Description = "Also time the model with these blocks pruned and merged (0-based, e.g. 6,7,8), against the unpruned one." };
        var resolutions = new Option<int[]?>("--resolution") { Description = "Input sides, e.g. 32,224 (default: the checkpoint's input size, else 32).", CustomParser = CommonOptions.ParseIntList }.EachInRange(DataCliOptions.MinInputSize, DataCliOptions.MaxInputSize);
        var batches = new Option<int[]>("--batch") { Description = "Batch sizes, e.g. 1,32.", DefaultValueFactory = _ => [1, 32], CustomParser = CommonOptions.ParseIntList }.EachInRange(1, OptionRules.MaxBatch);
        var engines = new Option<string>("--engine") { Description = "torchsharp, onnxruntime or both (comma-separated).", DefaultValueFactory = _ => "torchsharp" };
        var mode = new Option<string>("--mode") { Description = "infer (eval forward), train (AdamW step, TorchSharp only) or data (the training loader alone on --data, from files and --cache).", DefaultValueFactory = _ => "infer" };
        mode.AcceptOnlyFromAmong("infer", "train", "data");
        var dataOptions = new DataCliOptions(withPreprocessing: true);
        var inChans = new Option<int>("--in-chans") { Description = "Input channels (with --model).", DefaultValueFactory = _ => 1 }.Range(1, 64);
        var numClasses = new Option<int>("--num-classes") { Description = "Classes (with --model).", DefaultValueFactory = _ => 10 }.Range(1, 1_000_000);
        var stemStride = new Option<int?>("--stem-stride") { Description = "Stem stride (with --model; default: small-input setting at ≤ 64 px)." }.Range(1, 32);
        var runs = new Option<int>("--runs") { Description = "Timed runs per setting.", DefaultValueFactory = _ => 20 }.Range(1, 1_000_000);
        var warmup = new Option<int>("--warmup") { Description = "Untimed runs first.", DefaultValueFactory = _ => 3 }.Range(0, 1_000_000);
        var json = new Option<bool>("--json") { Description = "Print JSON." };
        var threads = new Option<int?>("--threads") { Description = "Intra-op threads for libtorch and ONNX Runtime alike (default: libtorch's, all cores)." }.Range(1, OptionRules.MaxThreads);
        var device = CommonOptions.Device();
        var command = new Command("bench", "Measure latency (median, p10, p90 ms), images/s and the speed-up of a merged model, in TorchSharp and ONNX Runtime.")
        {
            model, checkpoint, pruned, resolutions, batches, engines, mode, inChans, numClasses, stemStride, runs, warmup, json, threads, device,
        };
        dataOptions.AddTo(command);
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            if (parse.GetValue(mode) == "data")
            {
                return LoaderBench.Run(parse, dataOptions, parse.GetValue(checkpoint), parse.GetValue(resolutions) is { Length: > 0 } r ? r[0] : null,
                    parse.GetValue(batches)![0], parse.GetValue(runs), parse.GetValue(warmup), parse.GetValue(json));
            }
            var engineList = ParseEngines(parse.GetValue(engines)!);
            var blocks = parse.GetValue(pruned) is { } p ? CommonOptions.ParseBlocks("--pruned", p) : null;
            var (warmupRuns, timedRuns) = (parse.GetValue(warmup), parse.GetValue(runs));
            var train = parse.GetValue(mode) == "train";
            if (train && (blocks is not null || engineList.Any(e => e != InferenceEngine.TorchSharp)))
            {
                throw new ArgumentException("--mode train times a TorchSharp training step only; --pruned and --engine onnxruntime go with --mode infer");
            }
            var loaded = parse.GetValue(checkpoint) is { } path ? ModelLoading.Load(path, parse.GetValue(model), on) : null;
            var rows = new List<(string Model, BenchResult Result)>();
            var trainRows = new List<(string Model, int Resolution, LatencyStats Stats)>();
            try
            {
                var sides = parse.GetValue(resolutions) is { Length: > 0 } given ? given
                    : [loaded?.Meta?.Preprocessing?.InputSize ?? loaded?.Model.Config.ImgSize ?? 32];
                foreach (var resolution in sides)
                {
                    var subject = loaded?.Model ?? ModelLoading.FromOptions(null, parse.GetValue(model),
                        parse.GetValue(inChans), parse.GetValue(numClasses), parse.GetValue(stemStride), resolution, on);
                    if (train)
                    {
                        foreach (var batch in parse.GetValue(batches)!)
                        {
                            trainRows.Add((subject.Config.Name, resolution, TorchSharpBenchmark.TrainStep(subject, batch, resolution, warmupRuns, timedRuns)));
                        }
                    }
                    else
                    {
                        var models = Compared(subject, blocks, resolution);
                        try
                        {
                            rows.AddRange(LatencyComparison.Run(models, engineList, resolution, parse.GetValue(batches)!, warmupRuns, timedRuns)
                                .Select(r => (subject.Config.Name, r)));
                        }
                        finally
                        {
                            // The subject itself is disposed below (or is the checkpoint's model).
                            foreach (var m in models.Where(m => m.Model != subject))
                            {
                                m.Model.Dispose();
                            }
                        }
                    }
                    if (loaded is null)
                    {
                        subject.Dispose();
                    }
                }
            }
            finally
            {
                loaded?.Model.Dispose();
            }
            var threadCount = TorchSharp.torch.get_num_threads();
            if (parse.GetValue(json))
            {
                var array = new JsonArray();
                foreach (var (name, r) in rows)
                {
                    array.Add(new JsonObject
                    {
                        ["model"] = name,
                        ["variant"] = r.Variant,
                        ["engine"] = r.Engine == InferenceEngine.TorchSharp ? "torchsharp" : "onnxruntime",
                        ["mode"] = "infer",
                        ["resolution"] = r.Resolution,
                        ["batch"] = r.Batch,
                        ["median_ms"] = r.Stats.MedianMs,
                        ["p10_ms"] = r.Stats.P10Ms,
                        ["p90_ms"] = r.Stats.P90Ms,
                        ["images_per_second"] = r.Stats.ImagesPerSecond,
                        ["speedup"] = r.Speedup,
                        ["macs"] = r.Macs,
                        ["runs"] = r.Stats.Runs,
                        ["threads"] = r.Threads,
                        ["device"] = r.Engine == InferenceEngine.TorchSharp ? Devices.Name(on) : "cpu",
                    });
                }
                foreach (var (name, resolution, stats) in trainRows)
                {
                    array.Add(new JsonObject
                    {
                        ["model"] = name,
                        ["engine"] = "torchsharp",
                        ["mode"] = "train",
                        ["resolution"] = resolution,
                        ["batch"] = stats.Batch,
                        ["median_ms"] = stats.MedianMs,
                        ["p10_ms"] = stats.P10Ms,
                        ["p90_ms"] = stats.P90Ms,
                        ["images_per_second"] = stats.ImagesPerSecond,
                        ["runs"] = stats.Runs,
                        ["threads"] = threadCount,
                        ["device"] = Devices.Name(on),
                    });
                }
                Console.WriteLine(array.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                return 0;
            }
            if (train)
            {
                var table = new Table().AddColumns("model", "mode", "resolution", "batch", "median ms", "p10 ms", "p90 ms", "images/s");
                foreach (var (name, resolution, s) in trainRows)
                {
                    table.AddRow(name, "train", $"{resolution}", $"{s.Batch}", $"{s.MedianMs:F2}", $"{s.P10Ms:F2}", $"{s.P90Ms:F2}", $"{s.ImagesPerSecond:F0}");
                }
                table.Caption($"TorchSharp{(Devices.IsCpu(on) ? "" : $" on {Devices.Name(on)}")}, {threadCount} threads, {timedRuns} runs after {warmupRuns} warm-up");
                AnsiConsole.Write(table);
                return 0;
            }
            var results = new Table().AddColumns("model", "variant", "engine", "resolution", "batch", "median ms", "p10 ms", "p90 ms", "images/s", "speed-up", "MMACs");
            foreach (var (name, r) in rows)
            {
                results.AddRow(name, r.Variant, r.Engine == InferenceEngine.TorchSharp ? "TorchSharp" : "ONNX Runtime", $"{r.Resolution}", $"{r.Batch}",
                    $"{r.Stats.MedianMs:F2}", $"{r.Stats.P10Ms:F2}", $"{r.Stats.P90Ms:F2}", $"{r.Stats.ImagesPerSecond:F0}",
                    r.Speedup is double x ? $"{x:F2}×" : "", $"{r.Macs / 1e6:F1}");
            }
            results.Caption($"intra-op threads: libtorch {threadCount}, ONNX Runtime {threadCount}{(Devices.IsCpu(on) ? "" : $"; TorchSharp on {Devices.Name(on)}, ONNX Runtime on the CPU")}; " +
                $"{timedRuns} runs after {warmupRuns} warm-up, models timed in turns");
            AnsiConsole.Write(results);
            return 0;
        });
        return command;
    }

    private static List<InferenceEngine> ParseEngines(string value)
    {
        var engines = new List<InferenceEngine>();
        foreach (var token in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            engines.Add(token.ToLowerInvariant() switch
            {
                "torchsharp" => InferenceEngine.TorchSharp,
                "onnxruntime" or "ort" => InferenceEngine.OnnxRuntime,
                _ => throw new ArgumentException($"--engine '{token}': expected torchsharp or onnxruntime (comma-separated for both)"),
            });
        }
        return engines.Count > 0 ? engines.Distinct().ToList() : throw new ArgumentException("--engine needs torchsharp and/or onnxruntime");
    }

    /// <summary>
    /// What is timed: the model alone; with --pruned, the model and its merged copy; a checkpoint
    /// that is already pruned, merged or dropped, after an unpruned model of its configuration.
    /// </summary>
    private static List<BenchModel> Compared(ImageClassifier subject, int[]? blocks, int resolution)
    {
        var state = PruningState.Of(subject);
        if (blocks is not null)
        {
            if (!state.IsEmpty)
            {
                throw new ArgumentException("--pruned applies to an unpruned model; this checkpoint already has pruned, merged or dropped blocks");
            }
            return [new("original", subject), new($"merged {string.Join(",", blocks)}", LatencyComparison.MergedCopy(subject, blocks, resolution))];
        }
        if (state.IsEmpty)
        {
            return [new("original", subject)];
        }
        var unpruned = ModelRegistry.Create(subject.Config).MoveTo(Devices.Of(subject));
        unpruned.eval();
        var label = state.Merged.Count > 0 && state.Pruned.Count == 0 && state.Dropped.Count == 0
            ? $"merged {string.Join(",", state.Merged)}"
            : "checkpoint";
        return [new("original (random)", unpruned), new(label, subject)];
    }
}
