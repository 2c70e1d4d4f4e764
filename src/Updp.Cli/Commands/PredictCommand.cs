using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Updp.Checkpoints;
using Updp.Data;
using static TorchSharp.torch;

namespace Updp.Cli.Commands;

/// <summary><c>updp predict</c>: top-5 classes per image, or raw logits for a given input tensor.</summary>
internal static class PredictCommand
{
    public static Command Create()
    {
        var checkpoint = CommonOptions.Checkpoint();
        checkpoint.Required = true;
        var model = CommonOptions.Model();
        var images = new Option<string[]>("--images") { Description = "Image files (JPEG, PNG, BMP, WebP, GIF), prepared as the checkpoint records.", AllowMultipleArgumentsPerToken = true }.ExistingFiles();
        var tensorFile = new Option<string?>("--tensor") { Description = "A .safetensors file holding one NCHW float tensor, run as is (no preprocessing)." }.ExistingFile();
        var outFile = new Option<string?>("--out") { Description = "Write the predictions (and logits) as JSON to this file." }.OutputPath(isDirectory: false);
        var force = CommonOptions.Force();
        var top = new Option<int>("--top") { Description = "Classes to list per image.", DefaultValueFactory = _ => 5 }.Range(1, 100_000);
        var device = CommonOptions.Device();
        var command = new Command("predict", "Predict classes for images, or logits for a raw input tensor.")
        {
            checkpoint, model, images, tensorFile, outFile, force, top, device,
        };
        command.SetAction(parse =>
        {
            var on = CommonOptions.ApplyDevice(parse.GetValue(device));
            var files = parse.GetValue(images) ?? [];
            var tensorPath = parse.GetValue(tensorFile);
            if (parse.GetValue(outFile) is { } output)
            {
                var weights = parse.GetValue(checkpoint)!;
                OutputFiles.Check("--out", [output], parse.GetValue(force), [weights, Checkpoint.SidecarPath(weights), tensorPath, .. files]);
            }
            if ((files.Length == 0) == (tensorPath is null))
            {
                throw new ArgumentException("give either --images FILE... or --tensor X.safetensors");
            }
            var loaded = ModelLoading.Load(parse.GetValue(checkpoint), parse.GetValue(model), on);
            using var classifier = loaded.Model;
            var classes = loaded.Meta?.Classes is { Count: > 0 } c ? c : LabeledImages.NumberedClassNames(classifier.Config.NumClasses);

            using var scope = NewDisposeScope();
            var (input, names) = tensorPath is not null ? ReadTensor(tensorPath, classifier.Config.InChans) : ReadImages(files, loaded.Meta, classifier.Config.InChans);
            Tensor logits;
            using (no_grad())
            {
                logits = classifier.call(input.OnDevice(on)).OnDevice(Devices.Cpu);
            }
            var k = Math.Min(parse.GetValue(top), classes.Count);
            var probabilities = logits.softmax(1);
            var rows = new JsonArray();
            var table = new Table().AddColumns("input", "top classes");
            for (var i = 0; i < names.Count; i++)
            {
                var (values, indices) = probabilities[i].topk(k);
                var best = Enumerable.Range(0, k).Select(j => (Class: classes[(int)indices[j].item<long>()], P: values[j].item<float>())).ToList();
                table.AddRow(Markup.Escape(names[i]), Markup.Escape(string.Join(", ", best.Select(b => $"{b.Class} {b.P:P1}"))));
                var row = new JsonObject
                {
                    ["input"] = names[i],
                    ["top"] = new JsonArray(best.Select(b => (JsonNode)new JsonObject { ["class"] = b.Class, ["probability"] = b.P }).ToArray()),
                };
                if (tensorPath is not null)
                {
                    row["logits"] = new JsonArray(logits[i].data<float>().ToArray().Select(v => (JsonNode)JsonValue.Create(v)).ToArray());
                }
                rows.Add(row);
            }
            AnsiConsole.Write(table);
            if (parse.GetValue(outFile) is { } outPath)
            {
                var doc = new JsonObject { ["checkpoint"] = parse.GetValue(checkpoint), ["model"] = classifier.Config.Name, ["predictions"] = rows };
                AtomicFile.WriteAllText(outPath, doc.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
                AnsiConsole.MarkupLine(Markup.Escape($"wrote {outPath}"));
            }
            return 0;
        });
        return command;
    }

    private static (Tensor Input, List<string> Names) ReadTensor(string path, long inChans)
    {
        var tensors = StateDict.Read(path);
        // One tensor, or several of which one is called "input" (e.g. a file that also holds expected outputs).
        var (name, x) = tensors.Count == 1 ? (tensors.Keys.Single(), tensors.Values.Single())
            : tensors.TryGetValue("input", out var named) ? ("input", named)
            : throw new ArgumentException($"'{path}' holds {tensors.Count} tensors ({string.Join(", ", tensors.Keys)}) and none is called 'input'; --tensor expects one NCHW tensor");
        if (x.dim() != 4 || x.shape[1] != inChans || x.dtype != ScalarType.Float32)
        {
            throw new ArgumentException($"tensor '{name}' in '{path}' is {x.dtype} [{string.Join(",", x.shape)}]; expected float32 [N,{inChans},H,W]");
        }
        return (x, Enumerable.Range(0, (int)x.shape[0]).Select(i => $"{Path.GetFileName(path)}[{i}]").ToList());
    }

    private static (Tensor Input, List<string> Names) ReadImages(string[] files, CheckpointMeta? meta, long inChans)
    {
        var preprocessing = meta?.Preprocessing
            ?? throw new ArgumentException("this checkpoint records no preprocessing (a bare state dict); use --tensor with prepared inputs");
        if (preprocessing.ChannelCount != inChans)
        {
            throw new ArgumentException($"the checkpoint's preprocessing gives {preprocessing.ChannelCount} channels but the model takes {inChans}");
        }
        var transform = preprocessing.EvaluationTransform();
        var batch = new float[files.Length * transform.OutputLength];
        for (var i = 0; i < files.Length; i++)
        {
            // MNIST-style models saw small gray images: the file is first brought to their size.
            var image = preprocessing.IsResizeCrop || preprocessing.ChannelCount != 1
                ? ImageReader.Default.Read(files[i], preprocessing.ChannelCount)
                : new PixelImage(ImageFiles.ReadGrayscale(files[i], preprocessing.ImageSize), preprocessing.ImageSize, preprocessing.ImageSize, 1);
            transform.Apply(image, new Random(0), batch.AsSpan(i * transform.OutputLength, transform.OutputLength));
        }
        return (tensor(batch, [files.Length, preprocessing.ChannelCount, preprocessing.InputSize, preprocessing.InputSize]), files.ToList());
    }
}
