using TorchSharp;
using TorchSharp.Modules;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Models.ResNet;

// ResNet's forms (docs/METHOD.md#resnet). Every residual block is prunable, the first block of a layer too: its
// projection shortcut (1×1 conv + BN, stride 2) folds into the centre tap of the merged kernel like
// the identity does.
//
// Pruned: the inner ReLU(s) → act_λ (one λ per block) and the zero padding of the inner convs moved to
// the block input (ConvMergeMath.MovedPadding), so that between the input and the residual sum the
// block is one linear map. The output ReLU stays. No batch norm is added (ResNet has no LayerNorm);
// the BNs after a removed ReLU keep their statistics until the stages recalibrate them.
//
// Moving the padding changes the border: the first conv's output gains a one-pixel ring, computed
// from the padded input, where the original pads with zeros. At 0 < λ < 1 the ring is faded in:
// h_ring = λ·act_λ(u_ring), so λ=0 is the original block exactly and λ=1 the moved-padding linear
// block the merge needs. The first BN normalises the ring with the interior's statistics (in
// training mode the batch's, computed on the interior only, as the original BN sees it).
//
// Merged: BasicBlock (3×3 stride s, 3×3) → one (3+2s)×(3+2s) conv of stride s: 5×5 at s=1, 7×7 at
// s=2 (more MACs than the two 3×3s: 25C² against 18C² per pixel at s=1). Bottleneck (1×1, 3×3 stride
// s, 1×1) → one 3×3 conv of stride s from C_in to 4·planes channels: the pruned bottleneck is a
// low-rank factorisation of it, so the merged conv has many more MACs (≈8.5× in resnet50's layers).
// Both keep the output ReLU.

/// <summary>Pruning rule for <see cref="BasicBlock"/> and <see cref="Bottleneck"/>.</summary>
internal sealed class ResNetBlockRule : IBlockRule
{
    public IReadOnlyCollection<Type> BlockTypes { get; } =
        [typeof(BasicBlock), typeof(Bottleneck), typeof(ProgressiveBasicBlock), typeof(ProgressiveBottleneck), typeof(MergedResNetBlock), typeof(ResNetShortcut)];

    public BlockForm FormOf(nn.Module block) => block switch
    {
        BasicBlock or Bottleneck => BlockForm.Original,
        ProgressiveBasicBlock or ProgressiveBottleneck => BlockForm.Pruned,
        MergedResNetBlock => BlockForm.Merged,
        ResNetShortcut => BlockForm.Dropped,
        _ => throw new ArgumentException($"not a ResNet block: {block.GetType().Name}", nameof(block)),
    };

    public nn.Module<Tensor, Tensor> Prune(nn.Module block) => block switch
    {
        BasicBlock b => new ProgressiveBasicBlock(b),
        Bottleneck b => new ProgressiveBottleneck(b),
        _ => throw new ArgumentException($"only an original ResNet block can be pruned, not a {block.GetType().Name}", nameof(block)),
    };

    public nn.Module<Tensor, Tensor> Unprune(nn.Module prunedBlock) => prunedBlock switch
    {
        ProgressiveBasicBlock p => p.Original,
        ProgressiveBottleneck p => p.Original,
        _ => throw new ArgumentException($"only a pruned ResNet block can be unpruned, not a {prunedBlock.GetType().Name}", nameof(prunedBlock)),
    };

    /// <summary>
    /// The identity for a block with an identity shortcut; otherwise the projection shortcut followed
    /// by the block's output ReLU (a strided block cannot be the identity). A merged block with a
    /// projection has folded its shortcut away and cannot be dropped.
    /// </summary>
    public nn.Module<Tensor, Tensor> Drop(nn.Module block)
    {
        var downsample = block switch
        {
            BasicBlock b => b.Downsample,
            Bottleneck b => b.Downsample,
            ProgressiveBasicBlock p => p.Original.Downsample,
            ProgressiveBottleneck p => p.Original.Downsample,
            MergedResNetBlock m when m.HasProjection =>
                throw new InvalidOperationException("a merged ResNet block with a projection shortcut cannot be dropped: the shortcut is folded into its conv"),
            MergedResNetBlock => null,
            _ => throw new ArgumentException($"not a ResNet block: {block.GetType().Name}", nameof(block)),
        };
        return downsample is null ? new DroppedBlock() : new ResNetShortcut(downsample);
    }

    public nn.Module<Tensor, Tensor> Merge(nn.Module prunedBlock) => prunedBlock switch
    {
        ProgressiveBasicBlock p => MergeBasic(p.Original),
        ProgressiveBottleneck p => MergeBottleneck(p.Original),
        _ => throw new ArgumentException($"only a pruned ResNet block can be merged, not a {prunedBlock.GetType().Name}", nameof(prunedBlock)),
    };

    private static MergedResNetBlock MergeBasic(BasicBlock b) =>
        Build(b.Conv1.weight.shape[1], b.Conv2.weight.shape[0], 3 + (2 * b.Stride), b.Stride, b.Downsample, () =>
        {
            var (w, bias) = Fold(F64(b.Conv1.weight), null, b.Bn1);
            (w, bias) = ConvMergeMath.ComposeConv(w, bias, b.Stride, F64(b.Conv2.weight), ZeroBias(b.Conv2));
            return Fold(w, bias, b.Bn2);
        });

    private static MergedResNetBlock MergeBottleneck(Bottleneck b) =>
        Build(b.Conv1.weight.shape[1], b.Conv3.weight.shape[0], 3, b.Stride, b.Downsample, () =>
        {
            var (w, bias) = Fold(F64(b.Conv1.weight), null, b.Bn1);
            (w, bias) = ConvMergeMath.ComposeConv(w, bias, 1, F64(b.Conv2.weight), ZeroBias(b.Conv2));
            (w, bias) = Fold(w, bias, b.Bn2);
            (w, bias) = ConvMergeMath.ComposeConv(w, bias, b.Stride, F64(b.Conv3.weight), ZeroBias(b.Conv3));
            return Fold(w, bias, b.Bn3);
        });

    // The residual branch's conv in float64, then the shortcut into its centre tap, cast once.
    private static MergedResNetBlock Build(long inChannels, long outChannels, int kernel, int stride, Sequential? downsample,
        Func<(Tensor Weight, Tensor Bias)> branch)
    {
        // Built outside the dispose scope below, which frees only the intermediate tensors.
        var merged = new MergedResNetBlock(inChannels, outChannels, kernel, stride, downsample is not null);
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var (w, b) = branch();
            if (downsample is null)
            {
                w = ConvMergeMath.AddToCentre(w, eye(outChannels, dtype: ScalarType.Float64, device: w.device));
            }
            else
            {
                var conv = (Conv2d)downsample[0];
                var (wd, bd) = Fold(F64(conv.weight), null, (BatchNorm2d)downsample[1]);
                w = ConvMergeMath.AddToCentre(w, wd[.., .., 0, 0]);
                b = b.Plus(bd);
            }
            merged.Conv.weight.copy_(w);
            merged.Conv.bias!.copy_(b);
            return merged;
        }
        catch
        {
            merged.Dispose();
            throw;
        }
    }

    private static Tensor F64(Tensor t) => t.detach().to_type(ScalarType.Float64);

    private static Tensor ZeroBias(Conv2d conv) => zeros(conv.weight.shape[0], ScalarType.Float64, conv.weight.device);

    private static (Tensor Weight, Tensor Bias) Fold(Tensor weight, Tensor? bias, BatchNorm2d bn) =>
        MergeMath.FoldBatchNorm(weight, bias ?? zeros(weight.shape[0], ScalarType.Float64, weight.device),
            F64(bn.running_mean!), F64(bn.running_var!), F64(bn.weight), F64(bn.bias!), bn.eps);
}

/// <summary>Forward passes shared by the progressive ResNet blocks.</summary>
internal static class ProgressiveResNet
{
    /// <summary>
    /// conv → bn → act_λ with the padding moved: the conv runs on the input padded by
    /// <paramref name="inputPadding"/> with no padding of its own, so its output has a ring of
    /// <paramref name="ring"/> extra pixels (the next conv's padding), faded in by λ. The BN normalises
    /// every pixel with the interior's statistics: the running ones in eval mode, the batch's in
    /// training mode (and only the interior updates its running statistics, as in the original block).
    /// </summary>
    public static Tensor FirstLayer(Tensor x, Conv2d conv, BatchNorm2d bn, int stride, int inputPadding, int ring, double lambda)
    {
        var padded = nn.functional.pad(x, [inputPadding, inputPadding, inputPadding, inputPadding]);
        var z = nn.functional.conv2d(padded, conv.weight, strides: [stride, stride]);
        var interior = z[.., .., ring..^ring, ring..^ring];
        Tensor mean, variance;
        if (bn.training)
        {
            using (no_grad())
            {
                // For its running statistics (and for hooks, e.g. BatchNormCalibration's); its output is not used.
                bn.call(interior);
            }
            mean = interior.mean([0, 2, 3]);
            variance = interior.var([0, 2, 3], unbiased: false);
        }
        else
        {
            mean = bn.running_mean!;
            variance = bn.running_var!;
        }
        var scale = bn.weight / variance.Plus(bn.eps).sqrt();
        var shift = bn.bias! - (mean * scale);
        var u = (z * scale.view(1, -1, 1, 1)).Plus(shift.view(1, -1, 1, 1));
        var h = Progressive.Activation(u, t => nn.functional.relu(t), lambda);
        if (lambda == 1)
        {
            return h;
        }
        var mask = full([1, 1, h.shape[2], h.shape[3]], lambda, h.dtype, h.device);
        mask[.., .., ring..^ring, ring..^ring].fill_(1);
        return h * mask;
    }

    public static Tensor Shortcut(Sequential? downsample, Tensor x) => downsample?.call(x) ?? x;

    /// <summary>MACs of a conv module producing <paramref name="positions"/> output pixels per channel.</summary>
    public static long ConvMacs(Conv2d conv, long positions) =>
        positions * conv.weight.shape[0] * conv.weight.shape[1] * conv.weight.shape[2] * conv.weight.shape[3];
}

/// <summary>
/// A <see cref="BasicBlock"/>'s progressive form: the same conv1, bn1, conv2, bn2 and downsample
/// (shared modules, so the parameter names stay), the inner ReLU → act_λ and the padding moved to
/// the input (pad 1+s, both convs unpadded). At λ=0 it runs the original block's forward.
/// </summary>
internal sealed class ProgressiveBasicBlock : nn.Module<Tensor, Tensor>, IProgressiveBlock, IMacCounter
{
    // Held outside a module-typed field so that RegisterComponents does not register it twice.
    private readonly Func<BasicBlock> _original;
    private double _lambda;

#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Conv2d conv2;
    private readonly BatchNorm2d bn2;
    private readonly Sequential? downsample;
#pragma warning restore IDE1006

    public ProgressiveBasicBlock(BasicBlock original) : base(nameof(ProgressiveBasicBlock))
    {
        _original = () => original;
        conv1 = original.Conv1;
        bn1 = original.Bn1;
        conv2 = original.Conv2;
        bn2 = original.Bn2;
        downsample = original.Downsample;
        RegisterComponents();
    }

    public double Lambda
    {
        get => _lambda;
        set => _lambda = Progressive.CheckLambda(value);
    }

    public IReadOnlyList<BatchNorm> BatchNorms => [];

    public BasicBlock Original => _original();

    public override Tensor forward(Tensor x)
    {
        if (_lambda == 0)
        {
            return Original.forward(x);
        }
        var stride = Original.Stride;
        var h = ProgressiveResNet.FirstLayer(x, conv1, bn1, stride, ConvMergeMath.MovedPadding(1, stride, 1), 1, _lambda);
        var y = bn2.call(nn.functional.conv2d(h, conv2.weight));
        return nn.functional.relu(y.Plus(ProgressiveResNet.Shortcut(downsample, x)));
    }

    public long CountMacs(Tensor input, Tensor output)
    {
        var positions = output.shape[0] * output.shape[2] * output.shape[3];
        return ProgressiveResNet.ConvMacs(conv1, positions) + ProgressiveResNet.ConvMacs(conv2, positions)
            + (downsample is null ? 0 : ProgressiveResNet.ConvMacs((Conv2d)downsample[0], positions));
    }
}

/// <summary>
/// A <see cref="Bottleneck"/>'s progressive form: shared modules, both inner ReLUs → act_λ, and
/// conv2's padding moved to the input (pad 1, conv1 and conv2 unpadded). At λ=0 it runs the original.
/// </summary>
internal sealed class ProgressiveBottleneck : nn.Module<Tensor, Tensor>, IProgressiveBlock, IMacCounter
{
    private readonly Func<Bottleneck> _original;
    private double _lambda;

#pragma warning disable IDE1006
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Conv2d conv2;
    private readonly BatchNorm2d bn2;
    private readonly Conv2d conv3;
    private readonly BatchNorm2d bn3;
    private readonly Sequential? downsample;
#pragma warning restore IDE1006

    public ProgressiveBottleneck(Bottleneck original) : base(nameof(ProgressiveBottleneck))
    {
        _original = () => original;
        conv1 = original.Conv1;
        bn1 = original.Bn1;
        conv2 = original.Conv2;
        bn2 = original.Bn2;
        conv3 = original.Conv3;
        bn3 = original.Bn3;
        downsample = original.Downsample;
        RegisterComponents();
    }

    public double Lambda
    {
        get => _lambda;
        set => _lambda = Progressive.CheckLambda(value);
    }

    public IReadOnlyList<BatchNorm> BatchNorms => [];

    public Bottleneck Original => _original();

    public override Tensor forward(Tensor x)
    {
        if (_lambda == 0)
        {
            return Original.forward(x);
        }
        var stride = Original.Stride;
        var h = ProgressiveResNet.FirstLayer(x, conv1, bn1, 1, ConvMergeMath.MovedPadding(0, 1, 1), 1, _lambda);
        h = bn2.call(nn.functional.conv2d(h, conv2.weight, strides: [stride, stride]));
        h = Progressive.Activation(h, t => nn.functional.relu(t), _lambda);
        var y = bn3.call(conv3.call(h));
        return nn.functional.relu(y.Plus(ProgressiveResNet.Shortcut(downsample, x)));
    }

    public long CountMacs(Tensor input, Tensor output)
    {
        long n = input.shape[0], inPositions = n * input.shape[2] * input.shape[3], positions = n * output.shape[2] * output.shape[3];
        return ProgressiveResNet.ConvMacs(conv1, inPositions) + ProgressiveResNet.ConvMacs(conv2, positions) + ProgressiveResNet.ConvMacs(conv3, positions)
            + (downsample is null ? 0 : ProgressiveResNet.ConvMacs((Conv2d)downsample[0], positions));
    }
}

/// <summary>
/// A pruned ResNet block at λ=1, merged: <c>conv</c> (k×k, stride s, padding (k−1)/2, with bias; the
/// BNs and the shortcut folded in) → ReLU.
/// </summary>
internal sealed class MergedResNetBlock : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Conv2d conv;
#pragma warning restore IDE1006

    public MergedResNetBlock(long inChannels, long outChannels, int kernelSize, int stride, bool hasProjection) : base(nameof(MergedResNetBlock))
    {
        HasProjection = hasProjection;
        conv = nn.Conv2d(inChannels, outChannels, kernelSize, stride: stride, padding: (kernelSize - 1) / 2);
        RegisterComponents();
    }

    public Conv2d Conv => conv;

    /// <summary>Whether the folded shortcut was a projection (so the block cannot be dropped any more).</summary>
    public bool HasProjection { get; }

    public override Tensor forward(Tensor x) => nn.functional.relu(conv.call(x));
}

/// <summary>
/// A dropped ResNet block with a projection shortcut: only <c>downsample</c> (1×1 conv stride s + BN,
/// the original block's module) and the output ReLU remain, since a strided block cannot be the identity.
/// </summary>
internal sealed class ResNetShortcut : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Sequential downsample;
#pragma warning restore IDE1006

    public ResNetShortcut(Sequential downsample) : base(nameof(ResNetShortcut))
    {
        this.downsample = downsample;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => nn.functional.relu(downsample.call(x));
}
