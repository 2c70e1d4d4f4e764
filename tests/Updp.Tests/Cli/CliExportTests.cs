using Microsoft.ML.OnnxRuntime;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Pruning.Blocks;
using Updp.Tests.Data;
using Updp.Tests.Models;
using Updp.Tests.Pruning;
using static TorchSharp.torch;

namespace Updp.Tests.Cli;

public partial class CliTests
{
    [Fact]
    public void ExportWritesAnOnnxFileThatComputesWhatTheCheckpointComputes()
    {
        using var dir = new TempDir();
        var pruned = dir.File("pruned.safetensors");
        using (var model = PruningTestSupport.Atto(seed: 4))
        {
            PruningTestSupport.Prune(model, [1, 6], lambda: 0.3, seed: 4);
            model.Drop(9);
            var meta = new CheckpointMeta { Classes = DatasetCatalog.FashionMnistClassNames, Preprocessing = new Preprocessing(28, 32, 0.286f, 0.353f) };
            Checkpoint.Save(model, pruned, PrunedModels.Describe(model, meta));
        }
        var onnx = dir.File("out/model.onnx");

        var (code, stdout, err) = Run("export", "--checkpoint", pruned, "--onnx", onnx, "--check-images", "64", "--threads", "1");

        Assert.True(code == 0, err);
        Assert.Contains("64 test images + 3 random", stdout);
        // Only the file: a new session, and the checkpoint loaded again, on images the export did not see.
        using var scope = NewDisposeScope();
        using var loaded = Checkpoint.Load(pruned, options: PrunedModels.LoadOptions).Model;
        var x = TrainingRunInputs(100, 16);
        using var session = new InferenceSession(onnx);
        using var value = OrtValue.CreateTensorValueFromMemory(x.data<float>().ToArray(), x.shape);
        using var outputs = session.Run(new RunOptions(), ["input"], [value], ["logits"]);
        var actual = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        using var _ = no_grad();
        var expected = loaded.call(x).data<float>().ToArray();
        var relative = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max() / Math.Max(1, expected.Max(Math.Abs));
        Assert.True(relative <= 1e-4, $"relative difference {relative}");
        Assert.Equal(["out/model.onnx", "pruned.json", "pruned.safetensors"], dir.Files().Where(f => f != "out").ToArray());
    }

    /// <summary>A DeiT checkpoint without preprocessing metadata is exported at the input size its pos_embed was built for.</summary>
    [Fact]
    public void ExportOfAModelBuiltForOneInputSizeUsesThatSize()
    {
        using var dir = new TempDir();
        var merged = dir.File("deit.safetensors");
        using (var model = DeiTTestSupport.SmallTiny(seed: 2))
        {
            PruningTestSupport.Prune(model, [1, 2], lambda: 1, seed: 2);
            Merger.MergeAll(model, [PruningTestSupport.Input(1)]);
            PruningTestSupport.Prune(model, [5], lambda: 0.5, seed: 3);
            Checkpoint.Save(model, merged, PrunedModels.Describe(model));
        }
        var onnx = dir.File("deit.onnx");

        var (code, stdout, err) = Run("export", "--checkpoint", merged, "--onnx", onnx, "--threads", "1");

        Assert.True(code == 0, err);
        Assert.Contains("input [batch, 1, 32, 32]", stdout);
        Assert.True(File.Exists(onnx));

        (code, _, err) = Run("export", "--checkpoint", merged, "--onnx", dir.File("other.onnx"), "--resolution", "64");

        Assert.Equal(2, code);
        Assert.Contains("--resolution 64", err);
        Assert.Contains("32×32", err);
        Assert.False(File.Exists(dir.File("other.onnx")));
    }

    private static Tensor TrainingRunInputs(int skip, int count)
    {
        var loader = new BatchLoader(FashionMnistFiles.Test.Subset(Enumerable.Range(skip, count).ToArray()),
            ImageTransform.ForEvaluation(Normalization.FashionMnist), new BatchLoaderOptions { BatchSize = count });
        return loader.Epoch(0).Single().Images;
    }

    [Theory]
    [InlineData("export --checkpoint /nonexistent/model.safetensors --onnx OUT", "/nonexistent/model.safetensors")]
    [InlineData("export --checkpoint FIXTURE --model convnext_nope --onnx OUT", "convnext_nope")]
    [InlineData("export --checkpoint GARBAGE --model convnext_atto --onnx OUT", "garbage.pt")]
    [InlineData("export --checkpoint FIXTURE --model convnext_atto --onnx OUT --opset 12", "--opset: expected an integer from 17")]
    [InlineData("export --checkpoint FIXTURE --model convnext_atto --onnx BADEXT", ".onnx")]
    public void ExportBadInputGetsAClearErrorAndWritesNothing(string args, string mentioned)
    {
        using var dir = new TempDir();
        var garbage = dir.Write("garbage.pt", [0x50, 0x4b, 1, 2, 3, 4, 5, 6, 7]);
        var argv = args.Split(' ').Select(a => a switch
        {
            "FIXTURE" => Path.Combine(Fixtures, "convnext_atto_convmlp.pt"),
            "GARBAGE" => garbage,
            "OUT" => dir.File("model.onnx"),
            "BADEXT" => dir.File("model.bin"),
            _ => a,
        }).ToArray();

        var (code, _, err) = Run(argv);

        Assert.Equal(2, code);
        Assert.StartsWith("error: ", err.TrimStart());
        Assert.Contains(mentioned, err.Replace("\n", "", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", err);
        Assert.Equal(["garbage.pt"], dir.Files());
    }
}
