using Microsoft.ML.OnnxRuntime;
using Updp.Data;
using Updp.Export;
using Updp.Models;
using Updp.Models.DeiT;
using Updp.Models.ResNet;
using Updp.Pruning.Blocks;
using Updp.Tests.Data;
using Updp.Tests.Models;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Export;

/// <summary>
/// ONNX export of MobileNetV2, ResNet (BasicBlock and Bottleneck) and DeiT in every block form,
/// checked in ONNX Runtime against TorchSharp on real Fashion-MNIST images (32×32, one channel, 10
/// classes). The subsets cover the first block of a stage, strided and shape-changing blocks, and
/// runs of consecutive blocks.
/// </summary>
public class FamilyOnnxExportTests
{
    /// <summary>A model under test: how to build it with non-trivial weights, and three block subsets.</summary>
    private sealed record Family(Func<ImageClassifier> Create, int[] A, int[] B, int[] C, int Droppable);

    private static readonly Dictionary<string, Family> Families = new()
    {
        // 17 blocks: 0 is the t=1 block (32→16), 1, 3, 6, 13 are strided, 10 and 16 change the width.
        ["mobilenetv2_100"] = new(() => Build(ModelConfig.SmallInput("mobilenetv2_100"), m => MobileNetV2PruningTests.RandomizeMobileNet(m, 3)),
            [0, 1, 2], [6, 7, 10, 16], [13, 14, 15], Droppable: 5),
        // 8 blocks: 2, 4, 6 are strided with a projection shortcut (6 dropped: the shortcut and ReLU remain).
        ["resnet18"] = new(() => Build(ModelConfig.SmallInput("resnet18"), m => ResNetBlockTests.Randomize(m, 4)),
            [0, 2, 3], [4, 5], [7], Droppable: 6),
        // 16 Bottlenecks: 0 has a stride-1 projection (64→256), 3, 7, 13 are strided. Stem stride 2 keeps it fast.
        ["resnet50"] = new(() => Build(ModelConfig.SmallInput("resnet50") with { StemStride = 2 }, m => ResNetBlockTests.Randomize(m, 5)),
            [0, 3, 4], [8, 13], [14, 15], Droppable: 7),
        // 12 blocks of one stage.
        ["deit_tiny"] = new(() => Build(ModelConfig.SmallInput(DeiTTestSupport.Tiny), m => DeiTTestSupport.Randomize(m, 6)),
            [0, 1], [5, 6, 7, 11], [3], Droppable: 9),
    };

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var model in Families.Keys)
        {
            foreach (var form in new[] { "original", "pruned", "pruned-1", "merged", "mixed" })
            {
                data.Add(model, form);
            }
        }
        return data;
    }

    private static ImageClassifier Build(ModelConfig config, Action<ImageClassifier> randomize)
    {
        var model = ModelRegistry.Create(config);
        randomize(model);
        return model;
    }

    /// <summary>
    /// The model of <paramref name="name"/> in <paramref name="form"/>: pruned with a random λ in
    /// (0, 1) per block on all three subsets; at λ = 1 on A; A and B merged; or A merged, B at
    /// random λ, C at λ = 1 and one block dropped.
    /// </summary>
    private static ImageClassifier ModelIn(string name, string form)
    {
        var family = Families[name];
        var model = family.Create();
        var random = new Random((name.Length * 31) + form.Length);
        void PruneAt(IEnumerable<int> blocks, Func<double> lambda)
        {
            foreach (var i in blocks)
            {
                Prune(model, [i], lambda(), seed: 100 + i);
            }
        }
        double RandomLambda() => 0.05 + (0.9 * random.NextDouble());
        switch (form)
        {
            case "pruned":
                PruneAt([.. family.A, .. family.B, .. family.C], RandomLambda);
                break;
            case "pruned-1":
                PruneAt(family.A, () => 1);
                break;
            case "merged":
                PruneAt([.. family.A, .. family.B], () => 1);
                Merger.MergeAll(model, [Input(5)]);
                break;
            case "mixed":
                PruneAt(family.A, () => 1);
                Merger.MergeAll(model, [Input(6)]);
                PruneAt(family.B, RandomLambda);
                PruneAt(family.C, () => 1);
                model.Drop(family.Droppable);
                break;
        }
        return model;
    }

    /// <summary>Real Fashion-MNIST test images, prepared as the small-input models take them (32×32, normalised).</summary>
    private static List<Tensor> RealImages(int skip, int count, int batch)
    {
        var loader = new BatchLoader(FashionMnistFiles.Test.Subset(Enumerable.Range(skip, count).ToArray()),
            ImageTransform.ForEvaluation(Normalization.FashionMnist), new BatchLoaderOptions { BatchSize = batch });
        return loader.Epoch(0).Select(b => b.Images.DetachFromDisposeScope()).ToList();
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ExportedFileComputesWhatTheModelComputesOnRealImages(string name, string form)
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        using var model = ModelIn(name, form);
        var path = dir.File("model.onnx");

        var report = OnnxExporter.Export(model, path, [.. RealImages(0, 12, 6), Input(9, batch: 3)], threads: 1);

        Assert.Equal(["model.onnx"], dir.Files());
        Assert.Equal(15, report.Parity.Images);
        Assert.InRange(report.Parity.RelativeDiff, 0, OnnxExporter.RelativeTolerance);
        // Other images and batch size, in a session made here rather than the exporter's.
        var x = RealImages(2000, 5, 5).Single();
        var (relative, maxAbs) = IndependentParity(path, model, x);
        Assert.True(relative <= OnnxExporter.RelativeTolerance, $"{name} {form}: relative difference {relative}");
        Assert.True(maxAbs > 0.5, $"{name} {form}: outputs too small ({maxAbs}) for the comparison to mean anything");
        // The block forms are really those asked for (a form silently left as the original would pass the check).
        var forms = model.Blocks.Select(b => b.Module.GetType().Name).ToList();
        Assert.Equal(form == "original", forms.All(f => !f.StartsWith("Progressive", StringComparison.Ordinal) && !f.StartsWith("Merged", StringComparison.Ordinal)));
        Assert.Equal(form is "merged" or "mixed", forms.Any(f => f.StartsWith("Merged", StringComparison.Ordinal)));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryParameterIsStoredOnceUnderItsNameAndNodesAreNamedAfterTheirModules(string name, string form)
    {
        using var scope = NewDisposeScope();
        using var model = ModelIn(name, form);
        var graph = OnnxExporter.Build(model, 32).Graph;

        // DeiT blocks at λ = 1 no longer read their norm2.
        var unusedNorms = model.Blocks.Where(b => b.Module is ProgressiveDeiTBlock { Lambda: 1 }).Select(b => $"{b.Path}.norm2.").ToList();
        OnnxExportTests.AssertParametersStoredOnce(graph, model, k => unusedNorms.Any(n => k.StartsWith(n, StringComparison.Ordinal)));

        var nodes = graph.Node.Select(n => n.Name).ToList();
        Assert.Equal(nodes.Count, nodes.Distinct().Count());
        foreach (var block in model.Blocks.Where(b => b.Module is not DroppedBlock))
        {
            Assert.Contains(nodes, n => n.StartsWith($"{block.Path}/", StringComparison.Ordinal) || n.StartsWith($"{block.Path}.", StringComparison.Ordinal));
        }
        Assert.Equal("batch", graph.Input.Single().Type.TensorType.Shape.Dim[0].DimParam);
    }

    /// <summary>torchvision's ImageNet stem (7×7 stride 2, 3×3 stride-2 max-pool) exports too.</summary>
    [Fact]
    public void ResNetWithMaxPoolStemExports()
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("resnet18") with { StemStride = ResNet.DefaultStemStride });
        ResNetBlockTests.Randomize(model, 8);
        Assert.True(((ResNet)model).HasMaxPool);
        Prune(model, [2], 0.4, seed: 1);
        var path = dir.File("model.onnx");

        OnnxExporter.Export(model, path, [Input(1, batch: 2)], threads: 1);

        Assert.Contains(OnnxExporter.Build(model, 32).Graph.Node, n => n.OpType == "MaxPool");
        var (relative, _) = IndependentParity(path, model, RealImages(0, 4, 4).Single());
        Assert.True(relative <= OnnxExporter.RelativeTolerance, $"relative difference {relative}");
    }

    /// <summary>DeiT's pos_embed fixes its input size: an export at another size is refused, naming both.</summary>
    [Fact]
    public void DeiTIsExportedAtItsOwnInputSizeOnly()
    {
        using var scope = NewDisposeScope();
        using var model = ModelRegistry.Create(ModelConfig.SmallInput(DeiTTestSupport.Tiny));

        var e = Assert.Throws<ArgumentException>(() => OnnxExporter.Build(model, 64));

        Assert.Contains("32×32", e.Message);
        Assert.Contains("64×64", e.Message);
        var input = OnnxExporter.Build(model, 32).Graph.Input.Single().Type.TensorType.Shape.Dim;
        Assert.Equal([32L, 32L], input.Skip(2).Select(d => d.DimValue));
    }

    private static (double Relative, double MaxAbsOutput) IndependentParity(string path, ImageClassifier model, Tensor x)
    {
        using var session = new InferenceSession(path);
        using var value = OrtValue.CreateTensorValueFromMemory(x.contiguous().data<float>().ToArray(), x.shape);
        using var outputs = session.Run(new RunOptions(), ["input"], [value], ["logits"]);
        var actual = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        model.eval();
        using var _ = no_grad();
        using var y = model.call(x);
        var expected = y.data<float>().ToArray();
        Assert.Equal(expected.Length, actual.Length);
        var maxAbs = expected.Max(Math.Abs);
        return (expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max() / Math.Max(1, maxAbs), maxAbs);
    }
}
