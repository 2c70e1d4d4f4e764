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
    /// Eval-mode batch norm <paramref name="bn"/> (at <paramref name="path"/>) over the last axis,
    /// x·s + (β − μ·s) with s = γ/√(σ²+ε), computed by nodes from its stored running statistics and
    /// affine parameters (folded to constants by the runtime).
    /// </summary>
    public static string BatchNormLastAxis(OnnxGraphBuilder g, string path, TorchSharp.Modules.BatchNorm1d bn, string x)
    {
        ArgumentNullException.ThrowIfNull(bn);
        var name = OnnxEmitContext.NodeName(path);
        var (scale, shift) = BatchNormScaleShift(g, name,
            Param(g, path, "running_mean", bn.running_mean!), Param(g, path, "running_var", bn.running_var!),
            Param(g, path, "weight", bn.weight), Param(g, path, "bias", bn.bias!), bn.eps);
        return g.Node("Add", name, [g.Node("Mul", $"{name}/mul", [x, scale]), shift]);
    }

    /// <summary>
    /// The per-channel scale s = γ/√(σ²+ε) and shift β − μ·s of an eval-mode batch norm, as nodes on
    /// its stored parameters (the shift is what the batch norm gives a zero input).
    /// </summary>
    public static (string Scale, string Shift) BatchNormScaleShift(OnnxGraphBuilder g, string name, string mean, string var, string weight, string bias, double eps)
    {
        var std = g.Node("Sqrt", $"{name}/std", [g.Node("Add", $"{name}/var_eps", [var, g.Constant($"{name}/eps", (float)eps)])]);
        var scale = g.Node("Div", $"{name}/scale", [weight, std]);
        var shift = g.Node("Sub", $"{name}/shift", [bias, g.Node("Mul", $"{name}/mean_scale", [mean, scale])]);
        return (scale, shift);
    }

    /// <summary>Eval-mode batch norm over axis 1 of NCHW (BatchNormalization, running statistics).</summary>
    public static string BatchNorm(OnnxGraphBuilder g, string name, string x, string weight, string bias, string mean, string var, double eps) =>
        g.Node("BatchNormalization", name, [x, weight, bias, mean, var], Attr("epsilon", (float)eps));

    /// <summary>
    /// A 2-D convolution with explicit zero <paramref name="pads"/> (top, left, bottom, right); the
    /// kernel size is read from the weight's shape by the runtime and written here for readers.
    /// </summary>
    public static string Conv(OnnxGraphBuilder g, string name, string x, string weight, string? bias, long[] kernel, long[] strides, long[] pads, long groups = 1, long[]? dilations = null)
    {
        List<string> inputs = bias is null ? [x, weight] : [x, weight, bias];
        return g.Node("Conv", name, inputs, Attr("kernel_shape", kernel), Attr("strides", strides), Attr("pads", pads),
            Attr("dilations", dilations ?? [1, 1]), Attr("group", groups));
    }

    public static string Relu(OnnxGraphBuilder g, string name, string x) => g.Node("Relu", name, [x]);

    /// <summary>min(max(x, 0), 6): Clip with its bounds as scalar inputs (opset ≥ 11).</summary>
    public static string Relu6(OnnxGraphBuilder g, string name, string x) =>
        g.Node("Clip", name, [x, g.Constant("relu6/min", 0), g.Constant("relu6/max", 6)]);

    /// <summary>Mean over H and W of NCHW, keeping them ([N, C, 1, 1]).</summary>
    public static string GlobalAveragePool(OnnxGraphBuilder g, string name, string x) => g.Node("GlobalAveragePool", name, [x]);

    /// <summary>Max pooling over H and W with square kernel, stride and padding (PyTorch pads with −∞, as ONNX does).</summary>
    public static string MaxPool(OnnxGraphBuilder g, string name, string x, long kernel, long stride, long padding) =>
        g.Node("MaxPool", name, [x], Attr("kernel_shape", kernel, kernel), Attr("strides", stride, stride), Attr("pads", padding, padding, padding, padding));

    /// <summary>Zero padding of H and W of NCHW by <paramref name="padding"/> pixels on every side.</summary>
    public static string Pad(OnnxGraphBuilder g, string name, string x, long padding) =>
        g.Node("Pad", name, [x, g.Int64s($"pad/{padding}", 0, 0, padding, padding, 0, 0, padding, padding)]);

    /// <summary>x[starts:ends] along <paramref name="axes"/> (negative ends count from the end).</summary>
    public static string Slice(OnnxGraphBuilder g, string name, string x, long[] starts, long[] ends, long[] axes) =>
        g.Node("Slice", name, [x, g.Int64s($"{name}/starts", starts), g.Int64s($"{name}/ends", ends), g.Int64s($"{name}/axes", axes)]);

    /// <summary>Reshape to <paramref name="shape"/> (0 copies the input's dimension, −1 is inferred).</summary>
    public static string Reshape(OnnxGraphBuilder g, string name, string x, params long[] shape) =>
        g.Node("Reshape", name, [x, g.Int64s($"{name}/shape", shape)]);

    public static string Transpose(OnnxGraphBuilder g, string name, string x, params long[] perm) => g.Node("Transpose", name, [x], Attr("perm", perm));

    /// <summary>
    /// A progressive operator of docs/METHOD.md#progressive-operators (act_λ, norm_λ): the original branch at λ = 0, the pruned
    /// one at λ = 1 (only that branch is written, as the TorchSharp forward computes only one), and
    /// their <see cref="Mix"/> named <paramref name="mixName"/> in between.
    /// </summary>
    public static string Progressive(OnnxGraphBuilder g, string mixName, double lambda, Func<string> original, Func<string> pruned)
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(pruned);
        return lambda switch
        {
            0 => original(),
            1 => pruned(),
            _ => Mix(g, mixName, original(), pruned(), lambda),
        };
    }

    /// <summary>(1−λ)·a + λ·b, the progressive mix of docs/METHOD.md#progressive-operators, with λ a named constant.</summary>
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
