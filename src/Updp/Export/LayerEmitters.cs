using System.Collections;
using TorchSharp;
using static TorchSharp.torch;
using TorchSharp.Modules;
using Updp.Models;
using Updp.Pruning.Blocks;
using static Updp.Export.OnnxGraphBuilder;

namespace Updp.Export;

// Emitters for layers every family uses. A family's own modules (blocks, heads) are in its file.

/// <summary><c>nn.Sequential</c> and <c>ModuleList</c>: the children in order, named by their index.</summary>
internal sealed class SequentialEmitter : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(Sequential), typeof(ModuleList<>)];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input)
    {
        var x = input;
        if (module is Sequential)
        {
            foreach (var (name, child) in module.named_children())
            {
                x = context.Emit(child, OnnxEmitContext.Join(path, name), x);
            }
            return x;
        }
        // A ModuleList's own order, which the model's forward follows.
        var i = 0;
        foreach (var child in (IEnumerable)module)
        {
            x = context.Emit((nn.Module)child, OnnxEmitContext.Join(path, $"{i++}"), x);
        }
        return x;
    }
}

/// <summary>
/// <c>nn.Identity</c>, a dropped block, and the layers that are the identity in eval mode (dropout,
/// stochastic depth): no node, the input passes through.
/// </summary>
internal sealed class IdentityEmitter : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(Identity), typeof(DroppedBlock), typeof(Dropout), typeof(DropPath)];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input) => input;
}

/// <summary>
/// A block in its progressive drop form (docs/METHOD.md#progressive-drop), for any family: the
/// original block's emitter at λ = 0, its dropped form's at λ = 1, and both mixed in between. Both
/// name their parameters as the original block does, so a tensor they share is stored once.
/// </summary>
internal sealed class FadingBlockEmitter : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(FadingBlock)];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input)
    {
        var fading = (FadingBlock)module;
        return OnnxOps.Progressive(context.Graph, OnnxEmitContext.NodeName(path, "fade"), fading.Lambda,
            () => context.Emit(fading.Original, path, input), () => context.Emit(fading.Dropped, path, input));
    }
}

/// <summary><c>nn.Conv2d</c> with zero padding (explicit, "same" or "valid").</summary>
internal sealed class Conv2dEmitter : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(Conv2d)];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input)
    {
        var conv = (Conv2d)module;
        if (conv.padding_mode != PaddingModes.Zeros)
        {
            throw new NotSupportedException($"ONNX export: {path} pads with {conv.padding_mode}; only zero padding is supported");
        }
        long[] pads;
        if (conv.padding is { } p)
        {
            pads = [p[0], p[1], p[0], p[1]];
        }
        else if (conv.padding_type == Padding.Same)
        {
            // PyTorch puts the odd pixel of "same" padding at the end, as ONNX's explicit pads can.
            var total = conv.kernel_size.Select((k, i) => conv.dilation[i] * (k - 1)).ToArray();
            pads = [total[0] / 2, total[1] / 2, total[0] - (total[0] / 2), total[1] - (total[1] / 2)];
        }
        else
        {
            pads = [0, 0, 0, 0];
        }
        var g = context.Graph;
        var bias = conv.bias is { } b ? OnnxOps.Param(g, path, "bias", b) : null;
        return OnnxOps.Conv(g, OnnxEmitContext.NodeName(path), input, OnnxOps.Param(g, path, "weight", conv.weight), bias,
            conv.kernel_size, conv.stride, pads, conv.groups, conv.dilation);
    }
}

/// <summary><c>nn.Linear</c> over the last axis.</summary>
internal sealed class LinearEmitter : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(Linear)];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input)
    {
        var linear = (Linear)module;
        var g = context.Graph;
        var bias = linear.bias is { } b ? OnnxOps.Param(g, path, "bias", b) : null;
        return OnnxOps.Linear(g, OnnxEmitContext.NodeName(path), input, OnnxOps.Param(g, path, "weight", linear.weight), 2, bias);
    }
}

/// <summary>
/// <see cref="DepthwiseConv2d"/>: a grouped Conv with "same" padding. On maps smaller than the
/// kernel, TorchSharp crops the kernel; the full kernel with full padding computes the same, since
/// the cropped taps only ever meet the zero padding.
/// </summary>
internal sealed class DepthwiseConv2dEmitter : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(DepthwiseConv2d)];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input)
    {
        var conv = (DepthwiseConv2d)module;
        var g = context.Graph;
        long k = conv.KernelSize, r = k / 2;
        return g.Node("Conv", OnnxEmitContext.NodeName(path),
            [input, OnnxOps.Param(g, path, "weight", conv.Weight), OnnxOps.Param(g, path, "bias", conv.Bias)],
            Attr("kernel_shape", k, k), Attr("strides", 1L, 1), Attr("pads", r, r, r, r), Attr("group", conv.Weight.shape[0]));
    }
}

/// <summary><see cref="PatchConv2d"/>: a Conv whose kernel is its stride, without padding.</summary>
internal sealed class PatchConv2dEmitter : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(PatchConv2d)];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input)
    {
        var conv = (PatchConv2d)module;
        var g = context.Graph;
        long k = conv.Patch;
        return OnnxOps.Conv(g, OnnxEmitContext.NodeName(path), input, OnnxOps.Param(g, path, "weight", conv.Weight),
            OnnxOps.Param(g, path, "bias", conv.Bias), [k, k], [k, k], [0, 0, 0, 0]);
    }
}

/// <summary><see cref="LayerNorm2d"/>: LayerNorm over the channels of NCHW, between two transposes.</summary>
internal sealed class LayerNorm2dEmitter : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(LayerNorm2d)];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input)
    {
        var norm = (LayerNorm2d)module;
        var g = context.Graph;
        var name = OnnxEmitContext.NodeName(path);
        var x = OnnxOps.ToChannelsLast(g, $"{name}/to_nhwc", input);
        x = OnnxOps.LayerNorm(g, name, x, OnnxOps.Param(g, path, "weight", norm.Weight), OnnxOps.Param(g, path, "bias", norm.Bias), norm.Eps);
        return OnnxOps.ToChannelsFirst(g, $"{name}/to_nchw", x);
    }
}

/// <summary><c>nn.BatchNorm2d</c> in eval mode: BatchNormalization with the running statistics.</summary>
internal sealed class BatchNorm2dEmitter : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(BatchNorm2d)];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input)
    {
        var bn = (BatchNorm2d)module;
        if (bn.weight is null || bn.bias is null || bn.running_mean is null || bn.running_var is null)
        {
            throw new NotSupportedException($"ONNX export: {path} is a batch norm without affine parameters or running statistics");
        }
        var g = context.Graph;
        return OnnxOps.BatchNorm(g, OnnxEmitContext.NodeName(path), input,
            OnnxOps.Param(g, path, "weight", bn.weight), OnnxOps.Param(g, path, "bias", bn.bias),
            OnnxOps.Param(g, path, "running_mean", bn.running_mean), OnnxOps.Param(g, path, "running_var", bn.running_var), bn.eps);
    }
}

/// <summary><c>nn.LayerNorm</c> over the last axis (LayerNormalization).</summary>
internal sealed class LayerNormEmitter : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [typeof(LayerNorm)];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input)
    {
        var norm = (LayerNorm)module;
        if (norm.normalized_shape.Length != 1 || norm.weight is null || norm.bias is null)
        {
            throw new NotSupportedException(
                $"ONNX export: {path} is a layer norm over [{string.Join(", ", norm.normalized_shape)}]{(norm.weight is null ? " without affine parameters" : "")}; only the last axis, with weight and bias, is supported");
        }
        var g = context.Graph;
        return OnnxOps.LayerNorm(g, OnnxEmitContext.NodeName(path), input, OnnxOps.Param(g, path, "weight", norm.weight), OnnxOps.Param(g, path, "bias", norm.bias), norm.eps);
    }
}
