using TorchSharp;
using TorchSharp.Modules;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Models.MobileNetV2;

// MobileNetV2's forms (docs/METHOD.md#mobilenetv2). Pruned: both ReLU6 → act_λ, and the zero padding of the
// depthwise conv moves to the block input, so that at λ=1 the block is one affine map of its
// zero-padded input. Merged: that map as one dense 3×3 conv C→C', stride s, with bias; BNs folded,
// the residual (if any) in the centre tap. The pruned form has no batch norms of its own to add:
// it runs the block's BNs, which are shared with the original form.

/// <summary>Pruning rule for <see cref="InvertedResidual"/>.</summary>
internal sealed class InvertedResidualRule : IBlockRule
{
    public IReadOnlyCollection<Type> BlockTypes { get; } =
        [typeof(InvertedResidual), typeof(ProgressiveInvertedResidual), typeof(MergedInvertedResidual)];

    public BlockForm FormOf(nn.Module block) => block switch
    {
        InvertedResidual => BlockForm.Original,
        ProgressiveInvertedResidual => BlockForm.Pruned,
        MergedInvertedResidual => BlockForm.Merged,
        _ => throw new ArgumentException($"not an inverted residual block: {block.GetType().Name}", nameof(block)),
    };

    public nn.Module<Tensor, Tensor> Prune(nn.Module block) => block is InvertedResidual original
        ? new ProgressiveInvertedResidual(original)
        : throw new ArgumentException($"only an original inverted residual can be pruned, not a {block.GetType().Name}", nameof(block));

    public nn.Module<Tensor, Tensor> Unprune(nn.Module prunedBlock) => prunedBlock is ProgressiveInvertedResidual p
        ? p.Original
        : throw new ArgumentException($"only a pruned inverted residual can be unpruned, not a {prunedBlock.GetType().Name}", nameof(prunedBlock));

    public string? CannotDrop(nn.Module block) => block switch
    {
        InvertedResidual b when !b.UseResidual => Shape(b),
        ProgressiveInvertedResidual p when !p.Original.UseResidual => Shape(p.Original),
        MergedInvertedResidual m when m.Stride != 1 || m.InChannels != m.OutChannels =>
            $"it maps {m.InChannels} to {m.OutChannels} channels with stride {m.Stride}, so the identity cannot replace it",
        _ => null,
    };

    public nn.Module<Tensor, Tensor> Merge(nn.Module prunedBlock)
    {
        if (prunedBlock is not ProgressiveInvertedResidual p)
        {
            throw new ArgumentException($"only a pruned inverted residual can be merged, not a {prunedBlock.GetType().Name}", nameof(prunedBlock));
        }
        var o = p.Original;
        // Built outside the dispose scope below, which frees only the intermediate tensors.
        var merged = new MergedInvertedResidual(o.InChannels, o.OutChannels, o.Stride);
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var w = MergeInvertedResidual(
                o.Expand is { } e ? Folded(e.Conv, e.Bn) : null,
                Folded(o.Depthwise.Conv, o.Depthwise.Bn),
                Folded(o.Project, o.ProjectBn),
                o.UseResidual);
            merged.Conv.weight.copy_(w.Weight);
            merged.Conv.bias!.copy_(w.Bias);
            return merged;
        }
        catch
        {
            merged.Dispose();
            throw;
        }
    }

    /// <summary>
    /// An inverted residual at λ=1 with its BNs folded, padding moved to its input, as one dense
    /// 3×3 conv C→C': expansion (null for t=1, i.e. the identity), depthwise, projection, and the
    /// residual in the centre tap when <paramref name="residual"/>.
    /// </summary>
    internal static (Tensor Weight, Tensor Bias) MergeInvertedResidual(
        (Tensor Weight, Tensor Bias)? expand, (Tensor Weight, Tensor Bias) depthwise, (Tensor Weight, Tensor Bias) project, bool residual)
    {
        var hidden = depthwise.Weight.shape[0];
        var (a, b) = expand ?? (eye(hidden, dtype: depthwise.Weight.dtype, device: depthwise.Weight.device),
            zeros(hidden, depthwise.Weight.dtype, depthwise.Weight.device));
        var (w, bias) = MergeMath.ComposeDepthwiseAfterPointwise(a, b, depthwise.Weight, depthwise.Bias);
        (w, bias) = MergeMath.ComposePointwiseAfterConv(w, bias, project.Weight, project.Bias);
        return (residual ? MergeMath.AddIdentityToCentreTap(w) : w, bias);
    }

    private static string Shape(InvertedResidual b) =>
        $"it maps {b.InChannels} to {b.OutChannels} channels with stride {b.Stride}, so the identity cannot replace it";

    // A bias-free conv followed by an eval-mode BN, as one conv with bias (float64).
    private static (Tensor Weight, Tensor Bias) Folded(Conv2d conv, BatchNorm2d bn)
    {
        static Tensor F64(Tensor t) => t.detach().to_type(ScalarType.Float64);
        var weight = F64(conv.weight);
        var bias = conv.bias is { } b ? F64(b) : zeros(weight.shape[0], ScalarType.Float64, weight.device);
        return MergeMath.FoldBatchNorm(weight, bias, F64(bn.running_mean!), F64(bn.running_var!), F64(bn.weight), F64(bn.bias!), bn.eps);
    }
}

/// <summary>
/// An <see cref="InvertedResidual"/>'s progressive form: the same <c>conv</c> modules (so the
/// parameter names stay <c>conv.0.0.weight</c>, …) with one λ for both activations:
/// <list type="bullet">
/// <item>ReLU6 → act_λ(x) = (1−λ)·ReLU6(x) + λ·x, after the expansion and after the depthwise conv;</item>
/// <item>the depthwise conv's zero padding moves to the block input: its input is the expansion of
/// the input padded by one zero pixel, whose border value is BN₁(pw(0)) = BN₁(0) (pw has no bias),
/// per channel. That border, which the original's zero padding lacks, enters as λ·BN₁(0): at λ=0
/// the padding is the original's zeros, at λ=1 the expanded zero pixel, so the block at λ=1 is an
/// affine map of the zero-padded input, one dense 3×3 conv once merged. In train mode BN₁(0) uses
/// the batch statistics the interior is normalised with, in eval mode the running ones.</item>
/// </list>
/// At λ=0 the block runs the original's operations (bit for bit). The t=1 block has no expansion:
/// padding its input by zeros is what its depthwise conv did anyway.
/// </summary>
internal sealed class ProgressiveInvertedResidual : nn.Module<Tensor, Tensor>, IProgressiveBlock, IMacCounter
{
    private readonly InvertedResidual _original;
    private double _lambda;

    public ProgressiveInvertedResidual(InvertedResidual original) : base(nameof(ProgressiveInvertedResidual))
    {
        _original = original;
        register_module("conv", original.Conv);
        register_module("drop_path", original.DropPath);
    }

    /// <summary>Registers nothing more: the original block (a field) owns the same modules.</summary>
    protected override void RegisterComponents()
    {
    }

    public double Lambda
    {
        get => _lambda;
        set => _lambda = Progressive.CheckLambda(value);
    }

    /// <summary>
    /// None: the pruned form adds no batch norm. It runs the block's own, which are shared with the
    /// original form, so calibrating them for λ=1 would change what the block computes at λ=0 (the
    /// search recalibrates every batch norm per subset; training updates them as usual).
    /// </summary>
    public IReadOnlyList<BatchNorm> BatchNorms => [];

    /// <summary>The original block, sharing every module with this one.</summary>
    public InvertedResidual Original => _original;

    public override Tensor forward(Tensor input)
    {
        var o = _original;
        if (_lambda == 0)
        {
            return o.forward(input);
        }
        var dw = o.Depthwise;
        Tensor h;
        if (o.Expand is { } e)
        {
            var z = e.Conv.call(input);
            var inner = Act(e.Bn.call(z));
            // Padding with λ·BN₁(0): pad (inner − λ·c) with zeros, then add λ·c everywhere.
            var border = (BatchNormOfZero(e.Bn, z) * _lambda).view(1, -1, 1, 1);
            var padded = nn.functional.pad(inner - border, [1, 1, 1, 1]).Plus(border);
            h = DepthwiseConvolution.Conv2d(padded, dw.Conv.weight, dw.Conv.bias, dw.Stride, [0, 0]);
        }
        else
        {
            h = dw.Convolve(input);
        }
        var y = o.ProjectBn.call(o.Project.call(Act(dw.Bn.call(h))));
        return o.UseResidual ? o.DropPath.call(y).Plus(input) : y;
    }

    public long CountMacs(Tensor input, Tensor output)
    {
        var o = _original;
        long inPositions = input.shape[0] * input.shape[2] * input.shape[3];
        long outPositions = output.shape[0] * output.shape[2] * output.shape[3];
        var expand = o.Expand is null ? 0 : inPositions * o.InChannels * o.Hidden;
        return expand + (outPositions * o.Hidden * 9) + (outPositions * o.Hidden * o.OutChannels);
    }

    private Tensor Act(Tensor x) => Progressive.Activation(x, t => nn.functional.relu6(t), _lambda);

    // What the batch norm gives a zero input with the statistics it normalises z with.
    private static Tensor BatchNormOfZero(BatchNorm2d bn, Tensor z)
    {
        Tensor mean, variance;
        if (bn.training || bn.running_mean is null)
        {
            mean = z.mean([0, 2, 3]);
            variance = z.var([0L, 2, 3], unbiased: false);
        }
        else
        {
            mean = bn.running_mean;
            variance = bn.running_var!;
        }
        return bn.bias! - (bn.weight * mean / variance.Plus(bn.eps).sqrt());
    }
}

/// <summary>
/// A pruned inverted residual at λ=1, merged: <c>conv</c>, one dense 3×3 conv C→C' with stride s,
/// padding 1 and bias (expansion, depthwise and projection with their BNs folded, the residual in
/// the centre tap).
/// </summary>
internal sealed class MergedInvertedResidual : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly Conv2d conv;
#pragma warning restore IDE1006

    public MergedInvertedResidual(long inChannels, long outChannels, int stride) : base(nameof(MergedInvertedResidual))
    {
        InChannels = inChannels;
        OutChannels = outChannels;
        Stride = stride;
        conv = nn.Conv2d(inChannels, outChannels, 3, stride: stride, padding: 1);
        RegisterComponents();
    }

    public long InChannels { get; }

    public long OutChannels { get; }

    public int Stride { get; }

    public Conv2d Conv => conv;

    public override Tensor forward(Tensor input) => conv.call(input);
}
