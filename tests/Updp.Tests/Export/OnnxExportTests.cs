using Microsoft.ML.OnnxRuntime;
using Onnx;
using TorchSharp;
using Updp.Data;
using Updp.Export;
using Updp.Models;
using Updp.Models.ConvNeXt;
using Updp.Pruning.Blocks;
using Updp.Tests.Data;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Export;

public class OnnxExportTests
{
    /// <summary>Real Fashion-MNIST test images, prepared as the small-input models take them (32×32, normalised).</summary>
    private static List<Tensor> RealImages(int skip, int count, int batch)
    {
        var loader = new BatchLoader(FashionMnistFiles.Test.Subset(Enumerable.Range(skip, count).ToArray()),
            ImageTransform.ForEvaluation(Normalization.FashionMnist), new BatchLoaderOptions { BatchSize = batch });
        return loader.Epoch(0).Select(b => b.Images.DetachFromDisposeScope()).ToList();
    }

    /// <summary>
    /// Runs the .onnx file in a new ONNX Runtime session made here (not through the exporter's own
    /// wrapper) and returns max |Δ| / max(1, max |y|) against TorchSharp's eval-mode output.
    /// </summary>
    private static (double Relative, double MaxAbsOutput) IndependentParity(string path, ImageClassifier model, Tensor x)
    {
        using var session = new InferenceSession(path);
        var data = x.contiguous().data<float>().ToArray();
        using var value = OrtValue.CreateTensorValueFromMemory(data, x.shape);
        using var outputs = session.Run(new RunOptions(), ["input"], [value], ["logits"]);
        var actual = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        model.eval();
        using var _ = no_grad();
        using var y = model.call(x);
        var expected = y.data<float>().ToArray();
        Assert.Equal(expected.Length, actual.Length);
        var maxAbs = expected.Max(Math.Abs);
        var diff = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        return (diff / Math.Max(1, maxAbs), maxAbs);
    }

    public static TheoryData<string> Forms => new() { "original", "pruned-0.3", "pruned-0", "pruned-1", "merged", "dropped", "mixed" };

    /// <summary>convnext_atto (timm's conv_mlp layout) in the block forms named by <paramref name="form"/>.</summary>
    private static ImageClassifier AttoIn(string form)
    {
        var model = Atto(seed: 7);
        switch (form)
        {
            case "pruned-0.3":
                Prune(model, [0, 3, 4, 9, 11], lambda: 0.3, seed: 1);
                break;
            case "pruned-0":
                Prune(model, [1, 5], lambda: 0, seed: 2);
                break;
            case "pruned-1":
                Prune(model, [2, 6, 10], lambda: 1, seed: 3);
                break;
            case "merged":
                Prune(model, [0, 2, 5, 11], lambda: 1, seed: 4);
                Merger.MergeAll(model, [Input(5)]);
                break;
            case "dropped":
                model.Drop(3);
                model.Drop(7);
                break;
            case "mixed":
                Prune(model, [1, 4, 8], lambda: 1, seed: 5);
                Merger.MergeAll(model, [Input(6)]);
                Prune(model, [2, 6], lambda: 0.6, seed: 6);
                model.Drop(10);
                break;
        }
        return model;
    }

    [Theory]
    [MemberData(nameof(Forms))]
    public void ExportedFileComputesWhatTheModelComputesOnRealImages(string form)
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        using var model = AttoIn(form);
        var path = dir.File("model.onnx");

        var report = OnnxExporter.Export(model, path, [.. RealImages(0, 64, 32), Input(9, batch: 3)], threads: 1);

        Assert.True(File.Exists(path));
        Assert.Equal(["model.onnx"], dir.Files());
        Assert.Equal(3, report.Parity.Batches);
        Assert.Equal(67, report.Parity.Images);
        Assert.InRange(report.Parity.RelativeDiff, 0, OnnxExporter.RelativeTolerance);
        // Other images, another batch size (the batch dimension is symbolic), a fresh session.
        foreach (var x in RealImages(1000, 5, 5))
        {
            var (relative, maxAbs) = IndependentParity(path, model, x);
            Assert.True(relative <= 1e-4, $"{form}: relative difference {relative}");
            Assert.True(maxAbs > 0.5, $"{form}: outputs too small ({maxAbs}) for the comparison to mean anything");
        }
    }

    [Theory]
    [InlineData(17)]
    [InlineData(18)]
    [InlineData(20)]
    [InlineData(21)]
    public void EveryOpsetWeWriteRunsInOnnxRuntime(int opset)
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        using var model = AttoIn("pruned-0.3");
        var path = dir.File("model.onnx");

        var report = OnnxExporter.Export(model, path, [Input(1, batch: 2)], opset, threads: 1);

        Assert.Equal(opset, report.Opset);
        var proto = ModelProto.Parser.ParseFrom(File.ReadAllBytes(path));
        Assert.Equal(opset, proto.OpsetImport.Single().Version);
        Assert.Equal(opset >= 20, proto.Graph.Node.Any(n => n.OpType == "Gelu"));
        var (relative, _) = IndependentParity(path, model, Input(2, batch: 4));
        Assert.True(relative <= 1e-4, $"opset {opset}: relative difference {relative}");
    }

    /// <summary>timm's tiny and larger store fc1/fc2 as Linear layers: a small architecture of that kind.</summary>
    [Fact]
    public void LinearMlpLayoutExportsToo()
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        var config = ModelConfig.SmallInput("convnext_atto") with { Name = "convnext_tiny" };
        using var model = new ConvNeXt(config, new ConvNeXt.Architecture([1, 1, 3, 1], [16, 24, 32, 48], ConvMlp: false));
        Randomize(model, 11);
        Prune(model, [2, 4], lambda: 1, seed: 2);
        Merger.MergeAll(model, [Input(1)]);
        Prune(model, [1], lambda: 0.5, seed: 1);
        var path = dir.File("tiny.onnx");

        OnnxExporter.Export(model, path, [Input(3, batch: 8)], threads: 1);

        var (relative, maxAbs) = IndependentParity(path, model, Input(4, batch: 2));
        Assert.True(relative <= 1e-4, $"relative difference {relative}");
        Assert.True(maxAbs > 0.5);
    }

    [Theory]
    [InlineData("original")]
    [InlineData("pruned-0.3")]
    [InlineData("pruned-1")]
    [InlineData("merged")]
    public void InitializersAreTheParametersStoredOnceUnderTheirNames(string form)
    {
        using var scope = NewDisposeScope();
        using var model = AttoIn(form);
        var graph = OnnxExporter.Build(model, 32).Graph;

        // At λ = 1 the pruned blocks no longer read their LayerNorm.
        AssertParametersStoredOnce(graph, model,
            k => form == "pruned-1" && new[] { 2, 6, 10 }.Any(i => k.StartsWith(model.Blocks[i].Path + ".norm.", StringComparison.Ordinal)));

        // Nodes are named after the modules they compute.
        var nodes = graph.Node.Select(n => n.Name).ToHashSet();
        Assert.Contains("stem/0", nodes);
        Assert.Contains("stages.1.blocks.0/conv_dw", nodes);
        Assert.Contains("head/fc", nodes);
        Assert.Equal(graph.Node.Count, nodes.Count);
        Assert.Equal("logits", graph.Output.Single().Name);
        Assert.Equal("batch", graph.Input.Single().Type.TensorType.Shape.Dim[0].DimParam);
    }

    /// <summary>
    /// The initializers named like a parameter (no '/') are exactly the model's tensors, each stored
    /// once with its shape and values; derived constants (λ, ε, axes) live under a node's name, with a
    /// '/'. Every parameter the forward pass reads is there: all but BN step counters and the keys
    /// <paramref name="unused"/> picks.
    /// </summary>
    internal static void AssertParametersStoredOnce(GraphProto graph, ImageClassifier model, Func<string, bool> unused)
    {
        var names = graph.Initializer.Select(t => t.Name).ToList();
        Assert.Equal(names.Count, names.Distinct().Count());
        var state = model.state_dict();
        var stored = graph.Initializer.Where(t => !t.Name.Contains('/', StringComparison.Ordinal)).ToList();
        foreach (var t in stored)
        {
            Assert.True(state.ContainsKey(t.Name), $"initializer {t.Name} is not a parameter of the model");
            var expected = state[t.Name];
            Assert.Equal(expected.shape, t.Dims.ToArray());
            Assert.Equal(expected.contiguous().data<float>().ToArray(),
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray());
        }
        var read = state.Keys.Where(k => !k.EndsWith("num_batches_tracked", StringComparison.Ordinal) && !unused(k));
        Assert.Equal(read.Order(StringComparer.Ordinal), stored.Select(t => t.Name).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void AFailedCheckLeavesNoFileAndKeepsTheOldOne()
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        using var model = Atto(seed: 3);
        model.ReplaceBlock(4, new OffByOneBlock());
        var path = dir.Write("model.onnx", [1, 2, 3]);

        var e = Assert.Throws<OnnxVerificationException>(() => OnnxExporter.Export(model, path, [Input(1)], threads: 1));

        Assert.Contains("differ from TorchSharp", e.Message);
        Assert.True(e.Parity.MaxAbsDiff > e.Parity.Tolerance);
        Assert.Equal(["model.onnx"], dir.Files());
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
    }

    [Fact]
    public void AModuleWithoutEmitterIsNamedAndNothingIsWritten()
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        using var model = Atto(seed: 3);
        model.ReplaceBlock(5, new UnknownBlock());

        var e = Assert.Throws<MissingOnnxEmitterException>(() => OnnxExporter.Export(model, dir.File("m.onnx"), [Input(1)], threads: 1));

        Assert.Equal("UnknownBlock", e.ModuleType);
        Assert.Equal("stages.2.blocks.1", e.ModulePath);
        Assert.Contains("UnknownBlock", e.Message);
        Assert.Contains("stages.2.blocks.1", e.Message);
        Assert.Empty(dir.Files());
    }

    /// <summary>Computes x + 1; its registered emitter writes the identity, so the check must catch it.</summary>
    private sealed class OffByOneBlock : nn.Module<Tensor, Tensor>
    {
        static OffByOneBlock() => OnnxEmitters.Register(new WrongEmitter());

        public OffByOneBlock() : base(nameof(OffByOneBlock))
        {
        }

        public override Tensor forward(Tensor input) => input + 1;

        private sealed class WrongEmitter : IOnnxEmitter
        {
            public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(OffByOneBlock)];

            public string Emit(OnnxEmitContext context, nn.Module module, string path, string input) => input;
        }
    }

    private sealed class UnknownBlock : nn.Module<Tensor, Tensor>
    {
        public UnknownBlock() : base(nameof(UnknownBlock))
        {
        }

        public override Tensor forward(Tensor input) => input;
    }
}
