using TorchSharp;
using static TorchSharp.torch;
using TorchSharp.Modules;
using Updp.Export;
using static Updp.Export.OnnxGraphBuilder;
using Ctx = Updp.Export.OnnxEmitContext;

namespace Updp.Models.ConvNeXt;

/// <summary>
/// ONNX emitters for ConvNeXt's modules: the model, its stages and head, and a block in each form
/// (original, pruned with λ, merged; a dropped block is the shared identity emitter). Blocks run
/// channels-last between conv_dw and the residual sum, as the TorchSharp modules do.
/// </summary>
internal static class ConvNeXtOnnx
{
    /// <summary>The emitters of the family's own modules, one per module type.</summary>
    public static IEnumerable<IOnnxEmitter> Emitters() =>
    [
        new DelegateEmitter(typeof(ConvNeXt), Model),
        new DelegateEmitter(typeof(ConvNeXtStage), Stage),
        new DelegateEmitter(typeof(ConvNeXtHead), Head),
        new DelegateEmitter(typeof(ConvNeXtBlock), Block),
        new DelegateEmitter(typeof(ProgressiveConvNeXtBlock), ProgressiveBlock),
        new DelegateEmitter(typeof(MergedConvNeXtBlock), MergedBlock),
    ];

    private static string Model(Ctx c, nn.Module m, string path, string x)
    {
        x = c.EmitChild(m, path, "stem", x);
        x = c.EmitChild(m, path, "stages", x);
        return c.EmitChild(m, path, "head", x);
    }

    private static string Stage(Ctx c, nn.Module m, string path, string x) =>
        c.EmitChild(m, path, "blocks", c.EmitChild(m, path, "downsample", x));

    // Global average pool → LayerNorm over C → fc. The pooled map is 1×1, so the norm runs on the
    // flattened [N, C] features without transposes.
    private static string Head(Ctx c, nn.Module m, string path, string x)
    {
        var g = c.Graph;
        var norm = (LayerNorm2d)Ctx.Child(m, path, "norm");
        x = OnnxOps.ReduceMean(g, Ctx.NodeName(path, "global_pool"), x, 2, 3);
        x = g.Node("Flatten", Ctx.NodeName(path, "flatten"), [x], Attr("axis", 1L));
        x = OnnxOps.LayerNorm(g, Ctx.NodeName(path, "norm"), x,
            OnnxOps.Param(g, path, "norm.weight", norm.Weight), OnnxOps.Param(g, path, "norm.bias", norm.Bias), norm.Eps);
        return c.EmitChild(m, path, "fc", x);
    }

    private static string Block(Ctx c, nn.Module m, string path, string input)
    {
        var block = (ConvNeXtBlock)m;
        var g = c.Graph;
        var x = OnnxOps.ToChannelsLast(g, Ctx.NodeName(path, "to_nhwc"), c.EmitChild(m, path, "conv_dw", input));
        x = LayerNorm(g, path, block, x);
        var h = Gelu(g, path, Fc(c, block.Mlp, path, "fc1", x));
        return Residual(g, path, Fc(c, block.Mlp, path, "fc2", h), block.Gamma, input);
    }

    // norm_λ and act_λ of docs/METHOD.md#progressive-operators. At λ = 0 and λ = 1 only one branch is written (as the
    // TorchSharp forward computes only one), so the unused parameters are not stored.
    private static string ProgressiveBlock(Ctx c, nn.Module m, string path, string input)
    {
        var block = (ProgressiveConvNeXtBlock)m;
        var g = c.Graph;
        var lambda = block.Lambda;
        var x = OnnxOps.ToChannelsLast(g, Ctx.NodeName(path, "to_nhwc"), c.EmitChild(m, path, "conv_dw", input));
        x = OnnxOps.Progressive(g, Ctx.NodeName(path, "norm_mix"), lambda,
            () => LayerNorm(g, path, block.Original, x), () => OnnxOps.BatchNormLastAxis(g, Ctx.Join(path, "bn"), block.BatchNorm, x));
        var h = Fc(c, block.Mlp, path, "fc1", x);
        h = OnnxOps.Progressive(g, Ctx.NodeName(path, "act_mix"), lambda, () => Gelu(g, path, h), () => h);
        return Residual(g, path, Fc(c, block.Mlp, path, "fc2", h), block.Gamma, input);
    }

    // conv_dw (BN folded) → pw, one C→C 1×1 convolution on the NCHW map (no transposes) → +x. Its
    // weight is the stored [C, C] Linear weight, viewed as a 1×1 kernel by an Unsqueeze that the
    // runtime folds.
    private static string MergedBlock(Ctx c, nn.Module m, string path, string input)
    {
        var block = (MergedConvNeXtBlock)m;
        var g = c.Graph;
        var x = c.EmitChild(m, path, "conv_dw", input);
        var pw = Ctx.NodeName(path, "pw");
        var weight = OnnxOps.Unsqueeze(g, $"{pw}/as_kernel", OnnxOps.Param(g, path, "pw.weight", block.Pw.weight), 2, 3);
        x = g.Node("Conv", pw, [x, weight, OnnxOps.Param(g, path, "pw.bias", block.Pw.bias!)],
            Attr("kernel_shape", 1L, 1), Attr("strides", 1L, 1), Attr("pads", 0L, 0, 0, 0));
        return g.Node("Add", Ctx.NodeName(path, "add"), [x, input]);
    }

    private static string LayerNorm(OnnxGraphBuilder g, string path, ConvNeXtBlock original, string x)
    {
        var (w, b) = original.NormParameters;
        return OnnxOps.LayerNorm(g, Ctx.NodeName(path, "norm"), x, OnnxOps.Param(g, path, "norm.weight", w), OnnxOps.Param(g, path, "norm.bias", b), original.NormEps);
    }

    private static string Gelu(OnnxGraphBuilder g, string path, string x) => OnnxOps.Gelu(g, Ctx.NodeName(path, "mlp.act"), x);

    // fc1 or fc2 of the MLP, with the weight as the checkpoint stores it (Linear [out,in] or 1×1 conv [out,in,1,1]).
    private static string Fc(Ctx c, ConvNeXtMlp mlp, string path, string name, string x)
    {
        var g = c.Graph;
        var mlpPath = Ctx.Join(path, "mlp");
        var (weight, bias) = Ctx.Child(mlp, mlpPath, name) switch
        {
            Conv2d conv => (conv.weight, conv.bias!),
            Linear linear => (linear.weight, linear.bias!),
            var other => throw new NotSupportedException($"ONNX export: {mlpPath}.{name} is a {other.GetType().Name}"),
        };
        var local = $"mlp.{name}";
        return OnnxOps.Linear(g, Ctx.NodeName(path, local), x, OnnxOps.Param(g, path, $"{local}.weight", weight), weight.dim(), OnnxOps.Param(g, path, $"{local}.bias", bias));
    }

    // ×gamma, back to NCHW, +x (drop_path is the identity in eval mode).
    private static string Residual(OnnxGraphBuilder g, string path, string x, TorchSharp.torch.Tensor gamma, string input)
    {
        x = g.Node("Mul", Ctx.NodeName(path, "gamma"), [x, OnnxOps.Param(g, path, "gamma", gamma)]);
        x = OnnxOps.ToChannelsFirst(g, Ctx.NodeName(path, "to_nchw"), x);
        return g.Node("Add", Ctx.NodeName(path, "add"), [x, input]);
    }
}
