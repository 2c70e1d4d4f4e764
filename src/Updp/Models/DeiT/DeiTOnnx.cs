using TorchSharp;
using static TorchSharp.torch;
using Updp.Export;
using static Updp.Export.OnnxGraphBuilder;
using Ctx = Updp.Export.OnnxEmitContext;

namespace Updp.Models.DeiT;

/// <summary>
/// ONNX emitters for DeiT's modules: the model (patch embedding, class token, position embedding,
/// final norm and head on the class token), attention, MLP and a block in each form (original,
/// pruned with λ, merged). Tokens are [batch, tokens, D] throughout; the model is built for one
/// input size, which must be the graph's.
/// </summary>
internal static class DeiTOnnx
{
    /// <summary>The emitters of the family's own modules, one per module type.</summary>
    public static IEnumerable<IOnnxEmitter> Emitters() =>
    [
        new DelegateEmitter(typeof(DeiT), Model),
        new DelegateEmitter(typeof(PatchEmbed), PatchEmbed),
        new DelegateEmitter(typeof(DeiTAttention), Attention),
        new DelegateEmitter(typeof(DeiTMlp), Mlp),
        new DelegateEmitter(typeof(DeiTBlock), Block),
        new DelegateEmitter(typeof(ProgressiveDeiTBlock), ProgressiveBlock),
        new DelegateEmitter(typeof(MergedDeiTBlock), MergedBlock),
    ];

    // patch_embed → [cls_token; patches] + pos_embed → blocks → norm → head on the class token. The
    // norm is per token, so it runs on the class token alone (what the head reads), after the Gather.
    private static string Model(Ctx c, nn.Module m, string path, string x)
    {
        var deit = (DeiT)m;
        if (c.InputSize != deit.ImgSize)
        {
            throw new ArgumentException(
                $"ONNX export: {deit.Config.Name} is built for {deit.ImgSize}×{deit.ImgSize} inputs (its pos_embed has one row per patch), not {c.InputSize}×{c.InputSize}");
        }
        var g = c.Graph;
        var patches = c.EmitChild(m, path, "patch_embed", x);
        var clsToken = m.get_parameter("cls_token") ?? throw new InvalidOperationException("DeiT has no cls_token");
        var posEmbed = m.get_parameter("pos_embed") ?? throw new InvalidOperationException("DeiT has no pos_embed");
        // cls_token [1, 1, D] expanded to [batch, 1, D]: the batch from the tokens' shape.
        var batch = g.Node("Shape", Ctx.NodeName(path, "cls_token/batch"), [patches], Attr("start", 0L), Attr("end", 1L));
        var shape = g.Node("Concat", Ctx.NodeName(path, "cls_token/shape"), [batch, g.Int64s(Ctx.NodeName(path, "cls_token/rest"), 1, clsToken.shape[2])], Attr("axis", 0L));
        var cls = g.Node("Expand", Ctx.NodeName(path, "cls_token"), [OnnxOps.Param(g, path, "cls_token", clsToken), shape]);
        var tokens = g.Node("Concat", Ctx.NodeName(path, "cat"), [cls, patches], Attr("axis", 1L));
        tokens = g.Node("Add", Ctx.NodeName(path, "pos_embed"), [tokens, OnnxOps.Param(g, path, "pos_embed", posEmbed)]);
        tokens = c.EmitChild(m, path, "blocks", tokens);
        var first = g.Node("Gather", Ctx.NodeName(path, "cls_select"), [tokens, g.Int64s(Ctx.NodeName(path, "cls_select/index"), 0)], Attr("axis", 1L));
        first = c.EmitChild(m, path, "norm", first);
        first = g.Node("Flatten", Ctx.NodeName(path, "flatten"), [first], Attr("axis", 1L));
        return c.EmitChild(m, path, "head", first);
    }

    // proj (kernel = stride = patch) → [B, D, H/p·W/p] → [B, patches, D], row-major as in timm.
    private static string PatchEmbed(Ctx c, nn.Module m, string path, string x)
    {
        var g = c.Graph;
        x = OnnxOps.Reshape(g, Ctx.NodeName(path, "flatten"), c.EmitChild(m, path, "proj", x), 0, 0, -1);
        return OnnxOps.Transpose(g, Ctx.NodeName(path, "transpose"), x, 0, 2, 1);
    }

    // qkv → per head softmax(q·kᵀ·scale)·v with scale = 1/√(D/heads), the default of the fused
    // scaled_dot_product_attention the model runs → heads concatenated → proj.
    private static string Attention(Ctx c, nn.Module m, string path, string x)
    {
        var attn = (DeiTAttention)m;
        var g = c.Graph;
        var dim = attn.Qkv.weight.shape[1];
        long heads = attn.NumHeads, headDim = dim / heads;
        var qkv = c.EmitChild(m, path, "qkv", x);
        // q, k, v are the three D-wide slices of qkv's output; each is split into heads:
        // [B, N, D] → [B, N, heads, d] → [B, heads, N, d] (k straight to [B, heads, d, N]).
        string Part(int i, string name, long[] perm)
        {
            var part = OnnxOps.Slice(g, Ctx.NodeName(path, name), qkv, [i * dim], [(i + 1) * dim], [2]);
            part = OnnxOps.Reshape(g, Ctx.NodeName(path, $"{name}/heads"), part, 0, 0, heads, headDim);
            return OnnxOps.Transpose(g, Ctx.NodeName(path, $"{name}/transpose"), part, perm);
        }
        var q = Part(0, "q", [0, 2, 1, 3]);
        var kT = Part(1, "k", [0, 2, 3, 1]);
        var v = Part(2, "v", [0, 2, 1, 3]);
        var scores = g.Node("MatMul", Ctx.NodeName(path, "scores"), [q, kT]);
        scores = g.Node("Mul", Ctx.NodeName(path, "scale"), [scores, g.Constant(Ctx.NodeName(path, "scale/value"), (float)(1 / Math.Sqrt(headDim)))]);
        var weights = g.Node("Softmax", Ctx.NodeName(path, "softmax"), [scores], Attr("axis", -1L));
        var o = g.Node("MatMul", Ctx.NodeName(path, "attend"), [weights, v]);
        o = OnnxOps.Transpose(g, Ctx.NodeName(path, "merge_heads/transpose"), o, 0, 2, 1, 3);
        o = OnnxOps.Reshape(g, Ctx.NodeName(path, "merge_heads"), o, 0, 0, dim);
        return c.EmitChild(m, path, "proj", o);
    }

    // fc1 → exact GELU → fc2.
    private static string Mlp(Ctx c, nn.Module m, string path, string x) =>
        c.EmitChild(m, path, "fc2", OnnxOps.Gelu(c.Graph, Ctx.NodeName(path, "act"), c.EmitChild(m, path, "fc1", x)));

    private static string Block(Ctx c, nn.Module m, string path, string input)
    {
        var x = AttentionResidual(c, m, path, input);
        var h = c.EmitChild(m, path, "mlp", c.EmitChild(m, path, "norm2", x));
        return c.Graph.Node("Add", Ctx.NodeName(path, "add2"), [x, h]);
    }

    // ProgressiveDeiTBlock.forward: x + attn(norm1(x)), then norm_λ (norm2 mixed with bn, a batch
    // norm over D with batch × tokens as its batch) → fc1 → act_λ (GELU) → fc2 → + x. At λ = 0 and
    // λ = 1 only one branch is written, as the TorchSharp forward computes only one.
    private static string ProgressiveBlock(Ctx c, nn.Module m, string path, string input)
    {
        var block = (ProgressiveDeiTBlock)m;
        var lambda = block.Lambda;
        if (lambda == 0)
        {
            return Block(c, block.Original, path, input);
        }
        var g = c.Graph;
        var x = AttentionResidual(c, m, path, input);
        var normed = OnnxOps.Progressive(g, Ctx.NodeName(path, "norm_mix"), lambda,
            () => c.EmitChild(m, path, "norm2", x), () => OnnxOps.BatchNormLastAxis(g, Ctx.Join(path, "bn"), block.BatchNorm, x));
        var mlp = block.Original.Mlp;
        var mlpPath = Ctx.Join(path, "mlp");
        var h = c.EmitChild(mlp, mlpPath, "fc1", normed);
        h = OnnxOps.Progressive(g, Ctx.NodeName(path, "act_mix"), lambda, () => OnnxOps.Gelu(g, Ctx.NodeName(mlpPath, "act"), h), () => h);
        h = c.EmitChild(mlp, mlpPath, "fc2", h);
        return g.Node("Add", Ctx.NodeName(path, "add2"), [x, h]);
    }

    // x + attn(norm1(x)) → fc, one D→D Linear holding the MLP branch and its residual.
    private static string MergedBlock(Ctx c, nn.Module m, string path, string input) =>
        c.EmitChild(m, path, "fc", AttentionResidual(c, m, path, input));

    private static string AttentionResidual(Ctx c, nn.Module m, string path, string input)
    {
        var a = c.EmitChild(m, path, "attn", c.EmitChild(m, path, "norm1", input));
        return c.Graph.Node("Add", Ctx.NodeName(path, "add1"), [input, a]);
    }
}
