using TorchSharp;
using static TorchSharp.torch;
using Updp.Export;
using Ctx = Updp.Export.OnnxEmitContext;

namespace Updp.Models.MobileNetV2;

/// <summary>
/// ONNX emitters for MobileNetV2's modules: the model, conv-BN-ReLU6, and an inverted residual in
/// each form (original, pruned with λ, merged). The block's <c>conv</c> sequence is emitted through
/// the shared emitters (Conv2d, BatchNorm2d), so its nodes are named <c>features.3/conv.1/0</c>, ….
/// </summary>
internal static class MobileNetV2Onnx
{
    /// <summary>The emitters of the family's own modules, one per module type.</summary>
    public static IEnumerable<IOnnxEmitter> Emitters() =>
    [
        new DelegateEmitter(typeof(MobileNetV2), Model),
        new DelegateEmitter(typeof(ConvBnAct), ConvBnAct),
        new DelegateEmitter(typeof(InvertedResidual), Block),
        new DelegateEmitter(typeof(ProgressiveInvertedResidual), ProgressiveBlock),
        new DelegateEmitter(typeof(MergedInvertedResidual), MergedBlock),
    ];

    // features → global average pool → classifier (dropout, the identity in eval mode; Linear).
    private static string Model(Ctx c, nn.Module m, string path, string x)
    {
        var g = c.Graph;
        x = c.EmitChild(m, path, "features", x);
        x = OnnxOps.GlobalAveragePool(g, Ctx.NodeName(path, "global_pool"), x);
        x = g.Node("Flatten", Ctx.NodeName(path, "flatten"), [x], OnnxGraphBuilder.Attr("axis", 1L));
        return c.EmitChild(m, path, "classifier", x);
    }

    // 0 conv → 1 BN → ReLU6.
    private static string ConvBnAct(Ctx c, nn.Module m, string path, string x)
    {
        x = c.EmitChild(m, path, "1", c.EmitChild(m, path, "0", x));
        return ((ConvBnAct)m).HasActivation ? OnnxOps.Relu6(c.Graph, Ctx.NodeName(path, "act"), x) : x;
    }

    private static string Block(Ctx c, nn.Module m, string path, string input)
    {
        var block = (InvertedResidual)m;
        var y = c.EmitChild(m, path, "conv", input);
        return block.UseResidual ? c.Graph.Node("Add", Ctx.NodeName(path, "add"), [y, input]) : y;
    }

    // ProgressiveInvertedResidual.forward: both ReLU6 → act_λ; the depthwise conv runs unpadded on
    // the expansion padded by λ·BN₁(0) (the zero padding moved to the block input). At λ = 0 the
    // block is the original, written as such.
    private static string ProgressiveBlock(Ctx c, nn.Module m, string path, string input)
    {
        var block = (ProgressiveInvertedResidual)m;
        var o = block.Original;
        var lambda = block.Lambda;
        if (lambda == 0)
        {
            return Block(c, o, path, input);
        }
        var g = c.Graph;
        var convPath = Ctx.Join(path, "conv");
        // conv.0 is the expansion when there is one; the depthwise, projection and its BN follow.
        var k = o.Expand is null ? 0 : 1;
        var dwPath = Ctx.Join(convPath, $"{k}");
        string h;
        if (o.Expand is { } e)
        {
            var ePath = Ctx.Join(convPath, "0");
            var bnPath = Ctx.Join(ePath, "1");
            var z = c.EmitChild(e, ePath, "0", input);
            var inner = Act(g, ePath, c.EmitChild(e, ePath, "1", z), lambda);
            // λ·BN₁(0) per channel, as [C, 1, 1]: pad (inner − border) with zeros, then add the border everywhere.
            var (_, shift) = OnnxOps.BatchNormScaleShift(g, Ctx.NodeName(ePath, "zero"),
                OnnxOps.Param(g, bnPath, "running_mean", e.Bn.running_mean!), OnnxOps.Param(g, bnPath, "running_var", e.Bn.running_var!),
                OnnxOps.Param(g, bnPath, "weight", e.Bn.weight), OnnxOps.Param(g, bnPath, "bias", e.Bn.bias!), e.Bn.eps);
            var border = g.Node("Mul", Ctx.NodeName(path, "border"), [shift, g.Constant(Ctx.NodeName(path, "border/lambda"), (float)lambda)]);
            border = OnnxOps.Unsqueeze(g, Ctx.NodeName(path, "border/as_map"), border, 1, 2);
            var padded = OnnxOps.Pad(g, Ctx.NodeName(path, "pad"), g.Node("Sub", Ctx.NodeName(path, "unborder"), [inner, border]), 1);
            padded = g.Node("Add", Ctx.NodeName(path, "padded"), [padded, border]);
            var dw = o.Depthwise.Conv;
            var dwConv = Ctx.Join(dwPath, "0");
            h = OnnxOps.Conv(g, Ctx.NodeName(dwConv), padded, OnnxOps.Param(g, dwConv, "weight", dw.weight), null,
                dw.kernel_size, dw.stride, [0, 0, 0, 0], o.Hidden);
        }
        else
        {
            // No expansion: padding the input with zeros is what the depthwise conv does already.
            h = c.EmitChild(o.Depthwise, dwPath, "0", input);
        }
        h = Act(g, dwPath, c.EmitChild(o.Depthwise, dwPath, "1", h), lambda);
        var y = c.EmitChild(o.Conv, convPath, $"{k + 1}", h);
        y = c.EmitChild(o.Conv, convPath, $"{k + 2}", y);
        return o.UseResidual ? g.Node("Add", Ctx.NodeName(path, "add"), [y, input]) : y;
    }

    // One dense 3×3 conv, stride s, padding 1, with bias.
    private static string MergedBlock(Ctx c, nn.Module m, string path, string input) => c.EmitChild(m, path, "conv", input);

    // act_λ after the batch norm of the ConvBnAct at path: ReLU6 at λ = 0, the identity at λ = 1.
    private static string Act(OnnxGraphBuilder g, string path, string x, double lambda) =>
        OnnxOps.Progressive(g, Ctx.NodeName(path, "act_mix"), lambda, () => OnnxOps.Relu6(g, Ctx.NodeName(path, "act"), x), () => x);
}
