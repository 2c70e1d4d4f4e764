using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using Updp.Checkpoints;
using Updp.Export;
using Updp.Models;
using Updp.Models.ResNet;
using Updp.Pruning.Blocks;
using Updp.Tests.Export;
using Updp.Tests.Models;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Pruning;

/// <summary>
/// The progressive drop of the mixed method (docs/METHOD.md#progressive-drop) on real small models
/// of every family: λ = 0 is the original block, λ = 1 its dropped form, in between the residual
/// branch scaled by 1 − λ; and a model with merged and fading blocks merges (and drops) to what it computed.
/// </summary>
public class ProgressiveDropTests
{
    /// <summary>A small-input model with weights far from their initialisation.</summary>
    private static ImageClassifier Model(string name)
    {
        var model = ModelRegistry.Create(ModelConfig.SmallInput(name));
        switch (name)
        {
            case "resnet18":
                ResNetBlockTests.Randomize(model, 4);
                break;
            case "mobilenetv2_050":
                MobileNetV2PruningTests.RandomizeMobileNet(model, 3);
                break;
            case DeiTTestSupport.Tiny:
                DeiTTestSupport.Randomize(model, 6);
                break;
            default:
                Randomize(model, 2);
                break;
        }
        return model;
    }

    /// <summary>Blocks of each family: identity shortcuts, and a ResNet block whose dropped form keeps its strided projection.</summary>
    public static TheoryData<string, int> Blocks => new()
    {
        { "convnext_atto", 5 },
        { "mobilenetv2_050", 4 },
        { "resnet18", 1 },
        { "resnet18", 2 },
        { DeiTTestSupport.Tiny, 3 },
    };

    /// <summary>What the block's dropped form computes, written out here: the identity, or ReLU(BN(conv 1×1 stride s)) of a projection.</summary>
    private static Tensor DroppedByHand(nn.Module block, Tensor x) => block switch
    {
        BasicBlock { Downsample: { } d } b => nn.functional.relu(nn.functional.batch_norm(
            nn.functional.conv2d(x, ((Conv2d)d[0]).weight, strides: [b.Stride, b.Stride]),
            ((BatchNorm2d)d[1]).running_mean!, ((BatchNorm2d)d[1]).running_var!, ((BatchNorm2d)d[1]).weight, ((BatchNorm2d)d[1]).bias!,
            training: false, eps: ((BatchNorm2d)d[1]).eps)),
        _ => x,
    };

    // The input block `index` sees when the model runs on `images`, in eval mode.
    private static Tensor BlockInput(ImageClassifier model, int index, Tensor images)
    {
        Tensor? captured = null;
        var hook = ((nn.Module<Tensor, Tensor>)model.Blocks[index].Module).register_forward_hook((_, x, y) =>
        {
            captured = x.detach().clone().MoveToOuterDisposeScope();
            return y;
        });
        using (NewDisposeScope())
        {
            model.call(images);
        }
        hook.remove();
        return captured!;
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void TheFadeRunsFromTheOriginalBlockToItsDroppedForm(string name, int index)
    {
        using var scope = NewDisposeScope();
        using var model = Model(name);
        model.eval();
        using var _ = no_grad();
        var x = BlockInput(model, index, Input(11));
        var original = model.Blocks[index].Module;
        var y0 = ((nn.Module<Tensor, Tensor>)original).call(x);
        var dropped = DroppedByHand(original, x);
        var keys = model.state_dict().Keys.ToList();

        var fading = model.Fade(index);
        var block = (nn.Module<Tensor, Tensor>)model.Blocks[index].Module;

        Assert.Equal(BlockForm.Fading, model.FormOf(index));
        Assert.Equal(keys, model.state_dict().Keys.ToList());
        Assert.Equal(0, fading.Lambda);
        Assert.True(Checkpoints.TestSupport.Identical(y0, block.call(x)), "λ = 0 is not the original block");

        fading.Lambda = 1;
        var y1 = block.call(x);
        Assert.True(MaxAbsDiff(dropped, y1) <= 1e-6 * Math.Max(1, MaxAbs(dropped)), $"λ = 1 is not the dropped form: {MaxAbsDiff(dropped, y1)}");
        Assert.True(MaxAbsDiff(y0, y1) > 1e-2, "the block's branch is negligible; the test would not see a wrong fade");

        // In between the output moves linearly from one to the other; with an identity shortcut that
        // is x + (1 − λ)·branch(x), the residual branch scaled down.
        fading.Lambda = 0.3;
        var mid = block.call(x);
        var expected = original is BasicBlock { Downsample: not null } ? (0.7 * y0) + (0.3 * dropped) : x + (0.7 * (y0 - x));
        Assert.True(MaxAbsDiff(expected, mid) <= 1e-5 * Math.Max(1, MaxAbs(expected)), $"λ = 0.3: {MaxAbsDiff(expected, mid)}");
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void AFullyFadedModelIsTheModelWithTheBlockDropped(string name, int index)
    {
        using var scope = NewDisposeScope();
        using var model = Model(name);
        model.eval();
        using var _ = no_grad();
        var images = Input(12, batch: 3);
        var before = model.call(images);

        model.Fade(index).Lambda = 1;
        var faded = model.call(images);
        model.Drop(index);

        Assert.Equal(BlockForm.Dropped, model.FormOf(index));
        Assert.True(Checkpoints.TestSupport.Identical(faded, model.call(images)));
        Assert.True(MaxAbsDiff(before, faded) > 1e-3);
    }

    [Fact]
    public void OnlyTheBranchOfAHalfFadedBlockLearnsAndNoneOfAFullyFadedOne()
    {
        using var scope = NewDisposeScope();
        using var model = Model("convnext_atto");
        var fading = model.Fade(5);
        var block = model.Blocks[5].Module;
        bool BranchHasGradient() => block.named_parameters().Any(p => p.parameter.grad is { } g && g.abs().sum().item<float>() > 0);

        foreach (var (lambda, expected) in new[] { (0.5, true), (1.0, false) })
        {
            fading.Lambda = lambda;
            model.zero_grad();
            model.train();
            model.call(Input(13)).sum().backward();
            Assert.Equal(expected, BranchHasGradient());
        }
    }

    [Fact]
    public void OnlyADroppableOriginalBlockCanFade()
    {
        using var scope = NewDisposeScope();
        using var model = Model("mobilenetv2_050");
        var e = Assert.Throws<ArgumentException>(() => model.Fade(3));
        Assert.Contains("block 3 (features.4) cannot be dropped", e.Message);
        Assert.Equal(BlockForm.Original, model.FormOf(3));

        model.Prune(4);
        Assert.Contains("pruned", Assert.Throws<InvalidOperationException>(() => model.Fade(4)).Message);
        var fading = model.Fade(5);
        Assert.Same(fading, model.Fade(5));
        Assert.Throws<ArgumentOutOfRangeException>(() => fading.Lambda = 1.5);
        Assert.Contains("fading", Assert.Throws<InvalidOperationException>(() => model.Prune(5)).Message);
    }

    /// <summary>Merged and dropped blocks of each family (MobileNetV2: only residual blocks are dropped; ResNet: block 2 keeps its projection).</summary>
    public static TheoryData<string, int[], int[]> Assignments => new()
    {
        { "convnext_atto", [1, 6], [3, 9] },
        { "mobilenetv2_050", [0, 3], [4, 8] },
        { "resnet18", [1, 4], [2, 7] },
        { DeiTTestSupport.Tiny, [2], [5, 8] },
    };

    [Theory]
    [MemberData(nameof(Assignments))]
    public void AMixedModelMergesAndDropsToWhatItComputedUnmerged(string name, int[] merged, int[] dropped)
    {
        using var scope = NewDisposeScope();
        using var model = Model(name);
        var g = new Generator(7);
        foreach (var i in merged)
        {
            var p = model.Prune(i);
            p.Lambda = 1;
            p.BatchNorms.ToList().ForEach(bn => RandomizeStatistics(bn, g));
        }
        foreach (var i in dropped)
        {
            model.Fade(i).Lambda = 1;
        }
        model.eval();
        var x = Input(14, batch: 5);
        Tensor unmerged;
        using (no_grad())
        {
            unmerged = model.call(x);
        }

        var report = Merger.MergeAll(model, [x]);

        Assert.Equal(merged, report.MergedBlocks);
        Assert.Equal(dropped, report.DroppedBlocks);
        Assert.All(merged, i => Assert.Equal(BlockForm.Merged, model.FormOf(i)));
        Assert.All(dropped, i => Assert.Equal(BlockForm.Dropped, model.FormOf(i)));
        Assert.Empty(model.FadingBlocks());
        var state = PruningState.Of(model);
        Assert.Equal(merged, state.Merged);
        Assert.Equal(dropped, state.Dropped);
        Assert.Null(state.Fading);
        using (no_grad())
        {
            var after = model.call(x);
            var tolerance = Merger.RelativeTolerance * Math.Max(1, MaxAbs(unmerged));
            Assert.InRange(MaxAbsDiff(after, unmerged), 0, tolerance);
            Assert.InRange(report.MaxAbsDiff, 0, report.Tolerance);
        }
    }

    [Fact]
    public void AHalfFadedBlockIsNotDroppedAndNothingIsMerged()
    {
        using var scope = NewDisposeScope();
        using var model = Model("convnext_atto");
        model.Prune(1).Lambda = 1;
        model.Fade(3).Lambda = 0.5;

        var e = Assert.Throws<InvalidOperationException>(() => Merger.MergeAll(model, [Input(15)]));

        Assert.Contains("block 3", e.Message);
        Assert.Contains("λ = 0.5", e.Message);
        Assert.Equal(BlockForm.Pruned, model.FormOf(1));
        Assert.Equal(BlockForm.Fading, model.FormOf(3));
    }

    [Fact]
    public void PruneAndMergeRefusesAHalfFadedBlockBeforeChangingAnything()
    {
        using var scope = NewDisposeScope();
        using var model = Model("convnext_atto");
        model.Fade(3).Lambda = 0.5;

        var e = Assert.Throws<ArgumentException>(() => Merger.PruneAndMerge(model, [1], [Input(18)]));

        Assert.Contains("block 3", e.Message);
        Assert.Equal(BlockForm.Original, model.FormOf(1));
        Assert.Equal(BlockForm.Fading, model.FormOf(3));
    }

    [Fact]
    public void AFadingBlockIsSavedWithItsLambdaAndLoadsBackUnderTheOriginalNames()
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        using var model = Model("resnet18");
        var names = model.state_dict().Keys.ToList();
        model.Prune(1).Lambda = 0.4;
        model.Fade(2).Lambda = 0.25;
        model.eval();
        var x = Input(16);
        using var _ = no_grad();
        var y = model.call(x);
        var path = dir.File("mixed.safetensors");

        Checkpoint.Save(model, path, PrunedModels.Describe(model));
        var loaded = Checkpoint.Load(path, options: PrunedModels.LoadOptions);

        using var copy = loaded.Model;
        // The fading block's tensors are stored under the original block's names (ResNet's pruned form adds none either).
        Assert.Equal(names.Order(StringComparer.Ordinal), Checkpoints.TestSupport.ParseSafetensors(path).Tensors.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(BlockForm.Fading, copy.FormOf(2));
        Assert.Equal(0.25, copy.FadingBlocks().Single().Fading.Lambda);
        Assert.Equal(0.4, copy.PrunedBlocks().Single().Progressive.Lambda);
        copy.eval();
        Assert.True(Checkpoints.TestSupport.Identical(y, copy.call(x)));
        var sidecar = JsonNode.Parse(File.ReadAllText(Checkpoint.SidecarPath(path)))!;
        Assert.Equal(0.25, sidecar["extra"]!["pruning"]!["fading"]!["2"]!.GetValue<double>());

        // A sidecar without fading blocks has no "fading" key: it reads as it did before the mixed method.
        using var plain = Model("resnet18");
        plain.Prune(1);
        Checkpoint.Save(plain, dir.File("plain.safetensors"), PrunedModels.Describe(plain));
        Assert.Null(JsonNode.Parse(File.ReadAllText(Checkpoint.SidecarPath(dir.File("plain.safetensors"))))!["extra"]!["pruning"]!["fading"]);
    }

    [Theory]
    [InlineData("convnext_atto", 5)]
    [InlineData("resnet18", 2)]
    public void AHalfFadedBlockExportsToOnnxWithBothFormsMixed(string name, int index)
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        using var model = Model(name);
        model.Fade(index).Lambda = 0.4;

        var report = OnnxExporter.Export(model, dir.File("model.onnx"), [Input(17, batch: 3)], threads: 1);

        Assert.InRange(report.Parity.RelativeDiff, 0, OnnxExporter.RelativeTolerance);
        var graph = OnnxExporter.Build(model, 32).Graph;
        Assert.Contains(graph.Node, n => n.Name == $"{model.Blocks[index].Path}/fade");
        OnnxExportTests.AssertParametersStoredOnce(graph, model, _ => false);
    }
}
