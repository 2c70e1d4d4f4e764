using System.CommandLine;
using Spectre.Console;
using Updp.Export;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Cli.Commands;

/// <summary>
/// <c>updp export</c>: writes a checkpoint (original, pruned with λ, merged or dropped blocks) as an
/// ONNX file with a symbolic batch dimension, checked in ONNX Runtime against TorchSharp first.
/// </summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        checkpoint.Required = true;
        var model = CommonOptions.Model();
        var onnx = new Option<string>("--onnx") { Description = "ONNX file to write (.onnx).", Required = true }.OutputPath(isDirectory: false);
        var opset = new Option<int>("--opset") { Description = $"ONNX opset ({OnnxExporter.MinOpset}–{OnnxExporter.MaxOpset}).", DefaultValueFactory = _ => OnnxExporter.DefaultOpset }.Range(OnnxExporter.MinOpset, OnnxExporter.MaxOpset);
        var resolution = new Option<int?>("--resolution") { Description = "Input side (default: the checkpoint's preprocessing, else 224)." }.Range(DataCliOptions.MinInputSize, DataCliOptions.MaxInputSize);
        var data = CommonOptions.Data();
        var images = new Option<int>("--check-images") { Description = "Real test images the export is checked on (random inputs when the data set does not fit the model).", DefaultValueFactory = _ => 256 }.Range(0, 1_000_000);
        var force = CommonOptions.Force();
        var threads = CommonOptions.Threads();
        var device = CommonOptions.Device();
        device.Description = "Where TorchSharp runs the model the ONNX file is checked against: cpu, cuda or cuda:N (docs/DEVICES.md); the file is written from a CPU copy and ONNX Runtime runs on the CPU.";
        var command = new Command("export", "Export a checkpoint to ONNX and check it in ONNX Runtime against TorchSharp.")
        {
            checkpoint, model, onnx, opset, resolution, data, images, force, threads, device,
        };
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            CommonOptions.ApplyThreads(parse.GetValue(threads));
            var target = parse.GetValue(onnx)!;
            if (!target.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
            {
                throw new ArgumentException($"--onnx must name a .onnx file, got '{target}'");
            }
            OutputFiles.Check("--onnx", [target], parse.GetValue(force), parse.GetValue(checkpoint));
            var version = parse.GetValue(opset);
            var loaded = ModelLoading.Load(parse.GetValue(checkpoint), parse.GetValue(model), on);
            using var classifier = loaded.Model;
            // A model built for one input size (a position embedding sized for it, say) is exported at that size.
            var fixedSize = ModelRegistry.Get(classifier.Config.Name).FixedInputSize ? classifier.Config.ImgSize : null;
            if (fixedSize is { } only && parse.GetValue(resolution) is { } asked && asked != only)
            {
                throw new ArgumentException($"--resolution {asked}: {classifier.Config.Name} is built for {only}×{only} inputs only");
            }
            var size = parse.GetValue(resolution) ?? fixedSize ?? loaded.Meta?.Preprocessing?.InputSize ?? 224;
            using var scope = NewDisposeScope();
            var inputs = ModelLoading.CheckInputs(parse.GetValue(data)!, loaded.Meta, classifier, parse.GetValue(images), size);
            var real = inputs.Sum(x => x.shape[0]);
            var realKind = ModelLoading.UsesRealImages(loaded.Meta, classifier, parse.GetValue(images), size)
                ? $"{real} test images" : $"{real} random inputs";
            // A batch of another size shows that the batch dimension is really free.
            inputs.Add(randn(3, classifier.Config.InChans, size, size, generator: new Generator(1)));
            OnnxExportReport report;
            try
            {
                report = OnnxExporter.Export(classifier, target, inputs, version);
            }
            catch (Exception e) when (e is OnnxVerificationException or NotSupportedException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return e is NotSupportedException ? 2 : 1;
            }
            var p = report.Parity;
            AnsiConsole.MarkupLine(Markup.Escape(
                $"{classifier.Config.Name} → {target}: {report.Nodes} nodes, {report.Initializers} initializers, {report.Bytes / 1e6:F1} MB, " +
                $"opset {report.Opset}, input [batch, {classifier.Config.InChans}, {size}, {size}]"));
            AnsiConsole.MarkupLine(Markup.Escape(
                $"ONNX Runtime vs TorchSharp on {realKind} + 3 random: max |Δ| {p.MaxAbsDiff:G3} = {p.RelativeDiff:G3}·max(1, max |y| = {p.MaxAbsOutput:G3}), " +
                $"within {OnnxExporter.RelativeTolerance:0e0}"));
            return 0;
        });
        return command;
    }
}
