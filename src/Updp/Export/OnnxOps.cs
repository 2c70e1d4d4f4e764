using static TorchSharp.torch;
using static Updp.Export.OnnxGraphBuilder;

namespace Updp.Export;

/// <summary>
/// Small ONNX building blocks shared by the emitters of every family. Weights are stored exactly as
/// the model holds them (name and shape of the parameter); where an op wants another layout (a
/// transposed matrix, a flattened 1×1 kernel) a Transpose/Flatten node on the initializer does it,
/// which ONNX Runtime folds into a constant when it loads the model.
/// </summary>
public static class OnnxOps
{
    /// <summary>NCHW → NHWC.</summary>
    public static string ToChannelsLast(OnnxGraphBuilder g, string name, string x) => g.Node("Transpose", name, [x], Attr("perm", 0L, 2, 3, 1));

    /// <summary>NHWC → NCHW.</summary>
    public static string ToChannelsFirst(OnnxGraphBuilder g, string name, string x) => g.Node("Transpose", name, [x], Attr("perm", 0L, 3, 1, 2));

    /// <summary>LayerNorm over the last axis (LayerNormalization, opset ≥ 17).</summary>
    public static string LayerNorm(OnnxGraphBuilder g, string name, string x, string weight, string bias, double eps) =>
        g.Node("LayerNormalization", name, [x, weight, bias], Attr("axis", -1L), Attr("epsilon", (float)eps));

    /// <summary>
    /// x·Wᵀ + b over the last axis, for a weight stored as [out, in] or as a 1×1 kernel [out, in, 1, 1]
    /// (timm's conv_mlp layers); <paramref name="weightRank"/> says which.
    /// </summary>
    public static string Linear(OnnxGraphBuilder g, string name, string x, string weight, long weightRank, string? bias)
    {
        var w = weightRank == 2 ? weight : g.Node("Flatten", $"{name}/flatten_weight", [weight], Attr("axis", 1L));
        var wt = g.Node("Transpose", $"{name}/transpose_weight", [w], Attr("perm", 1L, 0));
        var y = g.Node("MatMul", bias is null ? name : $"{name}/matmul", [x, wt]);
        return bias is null ? y : g.Node("Add", name, [y, bias]);
    }

    /// <summary>GELU, exact (erf) form as PyTorch's default: the Gelu op from opset 20, else 0.5·x·(1 + erf(x/√2)).</summary>
    public static string Gelu(OnnxGraphBuilder g, string name, string x)
    {
        if (g.Opset >= 20)
        {
            return g.Node("Gelu", name, [x]);
        }
        var scaled = g.Node("Div", $"{name}/div", [x, g.Constant("gelu/sqrt2", MathF.Sqrt(2))]);
        var erf = g.Node("Erf", $"{name}/erf", [scaled]);
        var onePlus = g.Node("Add", $"{name}/add", [erf, g.Constant("gelu/one", 1)]);
        var times = g.Node("Mul", $"{name}/mul", [x, onePlus]);
        return g.Node("Mul", name, [times, g.Constant("gelu/half", 0.5f)]);
    }

    /// <summary>Mean over <paramref name="axes"/> keeping them (axes an attribute before opset 18, an input from 18).</summary>
    public static string ReduceMean(OnnxGraphBuilder g, string name, string x, params long[] axes) =>
        g.Opset >= 18
            ? g.Node("ReduceMean", name, [x, g.Int64s($"{name}/axes", axes)], Attr("keepdims", 1L))
            : g.Node("ReduceMean", name, [x], Attr("axes", axes), Attr("keepdims", 1L));

    /// <summary>
    /// Eval-mode batch norm over the last axis, x·s + (β − μ·s) with s = γ/√(σ²+ε), computed by nodes
    /// from the stored running statistics and affine parameters (folded to constants by the runtime).
    /// </summary>
    public static string BatchNormLastAxis(OnnxGraphBuilder g, string name, string x, string mean, string var, string weight, string bias, double eps)
    {
        var std = g.Node("Sqrt", $"{name}/std", [g.Node("Add", $"{name}/var_eps", [var, g.Constant($"{name}/eps", (float)eps)])]);
        var scale = g.Node("Div", $"{name}/scale", [weight, std]);
        var shift = g.Node("Sub", $"{name}/shift", [bias, g.Node("Mul", $"{name}/mean_scale", [mean, scale])]);
        return g.Node("Add", name, [g.Node("Mul", $"{name}/mul", [x, scale]), shift]);
    }

    /// <summary>(1−λ)·a + λ·b, the progressive mix of DESIGN §2, with λ a named constant.</summary>
    public static string Mix(OnnxGraphBuilder g, string name, string a, string b, double lambda)
    {
        var wa = g.Node("Mul", $"{name}/original", [a, g.Constant($"{name}/one_minus_lambda", (float)(1 - lambda))]);
        var wb = g.Node("Mul", $"{name}/pruned", [b, g.Constant($"{name}/lambda", (float)lambda)]);
        return g.Node("Add", name, [wa, wb]);
    }

    /// <summary>Inserts axes of size 1 (axes an input, as from opset 13).</summary>
    public static string Unsqueeze(OnnxGraphBuilder g, string name, string x, params long[] axes) =>
        g.Node("Unsqueeze", name, [x, g.Int64s($"{name}/axes", axes)]);

    /// <summary>Stores a parameter under its name in the model (<c>path.local</c>).</summary>
    public static string Param(OnnxGraphBuilder g, string path, string local, Tensor value) => g.Initializer(OnnxEmitContext.Join(path, local), value);
}
