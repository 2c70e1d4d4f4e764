using TorchSharp;
using static TorchSharp.torch;
using TorchSharp.Modules;
using Updp.Export;
using Updp.Pruning.Blocks;
using Ctx = Updp.Export.OnnxEmitContext;

namespace Updp.Models.ResNet;

/// <summary>
/// ONNX emitters for ResNet's modules: the model, BasicBlock and Bottleneck in each form (original,
/// pruned with λ, merged) and a dropped block with a projection shortcut. Activations are named as
/// timm names them (<c>layer1.0/act1</c>, …, <c>act2</c>/<c>act3</c> after the residual sum).
/// </summary>
internal static class ResNetOnnx
{
    /// <summary>The emitters of the family's own modules, one per module type.</summary>
    public static IEnumerable<IOnnxEmitter> Emitters() =>
    [
        new DelegateEmitter(typeof(ResNet), Model),
        new DelegateEmitter(typeof(BasicBlock), Basic),
        new DelegateEmitter(typeof(Bottleneck), Bottleneck),
        new DelegateEmitter(typeof(ProgressiveBasicBlock), ProgressiveBasic),
        new DelegateEmitter(typeof(ProgressiveBottleneck), ProgressiveBottleneck),
        new DelegateEmitter(typeof(MergedResNetBlock), Merged),
        new DelegateEmitter(typeof(ResNetShortcut), Shortcut),
    ];

    // conv1 → bn1 → ReLU [→ max-pool] → layer1..4 → global average pool → fc.
    private static string Model(Ctx c, nn.Module m, string path, string x)
    {
        var g = c.Graph;
        x = OnnxOps.Relu(g, Ctx.NodeName(path, "act1"), c.EmitChild(m, path, "bn1", c.EmitChild(m, path, "conv1", x)));
        if (((ResNet)m).HasMaxPool)
        {
            x = OnnxOps.MaxPool(g, Ctx.NodeName(path, "maxpool"), x, 3, 2, 1);
        }
        foreach (var layer in new[] { "layer1", "layer2", "layer3", "layer4" })
        {
            x = c.EmitChild(m, path, layer, x);
        }
        x = OnnxOps.GlobalAveragePool(g, Ctx.NodeName(path, "global_pool"), x);
        x = g.Node("Flatten", Ctx.NodeName(path, "flatten"), [x], OnnxGraphBuilder.Attr("axis", 1L));
        return c.EmitChild(m, path, "fc", x);
    }

    private static string Basic(Ctx c, nn.Module m, string path, string input)
    {
        var g = c.Graph;
        var h = OnnxOps.Relu(g, Ctx.NodeName(path, "act1"), c.EmitChild(m, path, "bn1", c.EmitChild(m, path, "conv1", input)));
        var y = c.EmitChild(m, path, "bn2", c.EmitChild(m, path, "conv2", h));
        return Output(c, m, path, y, input, "act2", ((BasicBlock)m).Downsample);
    }

    private static string Bottleneck(Ctx c, nn.Module m, string path, string input)
    {
        var g = c.Graph;
        var h = OnnxOps.Relu(g, Ctx.NodeName(path, "act1"), c.EmitChild(m, path, "bn1", c.EmitChild(m, path, "conv1", input)));
        h = OnnxOps.Relu(g, Ctx.NodeName(path, "act2"), c.EmitChild(m, path, "bn2", c.EmitChild(m, path, "conv2", h)));
        var y = c.EmitChild(m, path, "bn3", c.EmitChild(m, path, "conv3", h));
        return Output(c, m, path, y, input, "act3", ((Bottleneck)m).Downsample);
    }

    // ProgressiveBasicBlock.forward: conv1 on the input padded by 1 + s (moved padding) → bn1 →
    // act_λ, its one-pixel ring faded in by λ → conv2 unpadded → bn2 → + shortcut → ReLU.
    private static string ProgressiveBasic(Ctx c, nn.Module m, string path, string input)
    {
        var block = (ProgressiveBasicBlock)m;
        var o = block.Original;
        if (block.Lambda == 0)
        {
            return Basic(c, o, path, input);
        }
        var h = FirstLayer(c, path, o.Conv1, o.Bn1, o.Stride, ConvMergeMath.MovedPadding(1, o.Stride, 1), block.Lambda, input);
        var y = c.EmitChild(m, path, "bn2", UnpaddedConv(c, path, "conv2", o.Conv2, h));
        return Output(c, m, path, y, input, "act2", o.Downsample);
    }

    // ProgressiveBottleneck.forward: conv1 (1×1) on the input padded by 1 → bn1 → act_λ with its ring
    // faded in → conv2 (3×3, stride s) unpadded → bn2 → act_λ → conv3 → bn3 → + shortcut → ReLU.
    private static string ProgressiveBottleneck(Ctx c, nn.Module m, string path, string input)
    {
        var block = (ProgressiveBottleneck)m;
        var o = block.Original;
        var lambda = block.Lambda;
        if (lambda == 0)
        {
            return Bottleneck(c, o, path, input);
        }
        var h = FirstLayer(c, path, o.Conv1, o.Bn1, 1, ConvMergeMath.MovedPadding(0, 1, 1), lambda, input);
        h = c.EmitChild(m, path, "bn2", UnpaddedConv(c, path, "conv2", o.Conv2, h));
        h = Act(c.Graph, path, "act2", h, lambda);
        var y = c.EmitChild(m, path, "bn3", c.EmitChild(m, path, "conv3", h));
        return Output(c, m, path, y, input, "act3", o.Downsample);
    }

    // One k×k conv (BNs and shortcut folded) → ReLU.
    private static string Merged(Ctx c, nn.Module m, string path, string input) =>
        OnnxOps.Relu(c.Graph, Ctx.NodeName(path, "act"), c.EmitChild(m, path, "conv", input));

    // A dropped block with a projection: downsample → ReLU.
    private static string Shortcut(Ctx c, nn.Module m, string path, string input) =>
        OnnxOps.Relu(c.Graph, Ctx.NodeName(path, "act"), c.EmitChild(m, path, "downsample", input));

    // y + shortcut(x) → ReLU; the shortcut is the identity or downsample (1×1 conv + BN).
    private static string Output(Ctx c, nn.Module m, string path, string y, string input, string act, Sequential? downsample)
    {
        var shortcut = downsample is null ? input : c.EmitChild(m, path, "downsample", input);
        return OnnxOps.Relu(c.Graph, Ctx.NodeName(path, act), c.Graph.Node("Add", Ctx.NodeName(path, "add"), [y, shortcut]));
    }

    // ProgressiveResNet.FirstLayer in eval mode: conv (no bias) on the input zero-padded by
    // inputPadding → BN (running statistics) → act_λ; below λ = 1 the one-pixel ring the moved
    // padding adds is scaled by λ: (1−λ)·pad(interior) + λ·h keeps the interior and gives the ring λ·h.
    private static string FirstLayer(Ctx c, string path, Conv2d conv, BatchNorm2d bn, int stride, int inputPadding, double lambda, string x)
    {
        var g = c.Graph;
        var convPath = Ctx.Join(path, "conv1");
        var z = OnnxOps.Conv(g, Ctx.NodeName(convPath), x, OnnxOps.Param(g, convPath, "weight", conv.weight), null,
            conv.kernel_size, [stride, stride], [inputPadding, inputPadding, inputPadding, inputPadding]);
        var h = Act(g, path, "act1", c.Emit(bn, Ctx.Join(path, "bn1"), z), lambda);
        if (lambda == 1)
        {
            return h;
        }
        const int ring = 1;
        var interior = OnnxOps.Slice(g, Ctx.NodeName(path, "ring/interior"), h, [ring, ring], [-ring, -ring], [2, 3]);
        return OnnxOps.Mix(g, Ctx.NodeName(path, "ring_mix"), OnnxOps.Pad(g, Ctx.NodeName(path, "ring/pad"), interior, ring), h, lambda);
    }

    // A block's conv without its padding (which the pruned form moved to the block input).
    private static string UnpaddedConv(Ctx c, string path, string name, Conv2d conv, string x)
    {
        var g = c.Graph;
        var convPath = Ctx.Join(path, name);
        return OnnxOps.Conv(g, Ctx.NodeName(convPath), x, OnnxOps.Param(g, convPath, "weight", conv.weight), null,
            conv.kernel_size, conv.stride, [0, 0, 0, 0]);
    }

    // act_λ with σ = ReLU.
    private static string Act(OnnxGraphBuilder g, string path, string name, string x, double lambda) =>
        OnnxOps.Progressive(g, Ctx.NodeName(path, $"{name}_mix"), lambda, () => OnnxOps.Relu(g, Ctx.NodeName(path, name), x), () => x);
}
