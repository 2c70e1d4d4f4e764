using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Updp.Benchmarks;
using Updp.Data;
using Updp.Training;

namespace Updp.Cli;

/// <summary>
/// <c>updp bench --mode data</c>: images/s of the training loader alone (decode, random resized
/// crop, flip, normalise, tensor), from the files and, with <c>--cache</c>, from the decoded cache.
/// </summary>
internal static class LoaderBench
{
    public static int Run(ParseResult parse, DataCliOptions dataOptions, string? checkpoint, int? resolution, int batch, int runs, int warmup, bool json)
    {
        var options = dataOptions.Read(parse, resolution);
        var meta = checkpoint is null ? null : Checkpoints.Checkpoint.ReadMeta(checkpoint);
        var data = parse.GetValue(dataOptions.Data)!;
        var files = TrainingRun.LoadData(data, new ValidationSplit(null, 0), preprocessing: meta?.Preprocessing,
            dataOptions: options with { CacheDirectory = null });
        var sources = new List<(string Name, RunData Data)> { ("files", files) };
        if (options.CacheDirectory is { } cache)
        {
            sources.Add(("cache", files with { Splits = files.Splits.WithCache(cache, files.Preprocessing, options.SkipBadImages, options.Progress) }));
        }
        var rows = new List<(string Source, LoaderStats Stats)>();
        var batches = Math.Max(1, runs);
        foreach (var (name, run) in sources)
        {
            var loader = new BatchLoader(run.Splits.Train, run.Preprocessing.TrainingTransform(ImageTransform.DefaultCropPadding, horizontalFlip: true),
                new BatchLoaderOptions { BatchSize = batch, Shuffle = true, DropLast = true });
            if (loader.BatchesPerEpoch == 0)
            {
                throw new ArgumentException($"--batch {batch} is larger than the {run.Splits.Train.Count} training images of '{data}'");
            }
            if (warmup > 0)
            {
                LoaderBenchmark.Run(loader, Math.Min(warmup, loader.BatchesPerEpoch), epoch: 1);
            }
            rows.Add((name, LoaderBenchmark.Run(loader, Math.Min(batches, loader.BatchesPerEpoch), epoch: 2)));
        }
        var p = files.Preprocessing;
        if (json)
        {
            Console.WriteLine(new JsonArray(rows.Select(r => (JsonNode)new JsonObject
            {
                ["mode"] = "data",
                ["source"] = r.Source,
                ["resolution"] = p.InputSize,
                ["batch"] = batch,
                ["images"] = r.Stats.Images,
                ["seconds"] = r.Stats.Seconds,
                ["images_per_second"] = r.Stats.ImagesPerSecond,
                ["workers"] = r.Stats.Workers,
            }).ToArray()).ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        var table = new Table().AddColumns("data", "source", "resolution", "batch", "images", "seconds", "images/s");
        foreach (var (source, stats) in rows)
        {
            table.AddRow(Markup.Escape(data), source, $"{p.InputSize}", $"{batch}", $"{stats.Images}", $"{stats.Seconds:F2}", $"{stats.ImagesPerSecond:F0}");
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(Markup.Escape($"training transform ({p.Describe()}), {rows[0].Stats.Workers} decoding threads, after {warmup} warm-up batches"));
        return 0;
    }
}

