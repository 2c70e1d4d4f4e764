using TorchSharp;
using TorchSharp.Modules;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Models.ConvNeXt;

// ConvNeXt's forms (docs/METHOD.md#convnext). Pruned: norm → BN over C, GELU → identity, so between conv_dw's
// output and the residual sum the block is linear. Merged: conv_dw with the BN folded, then one
// channel mixing C→C, then +x. Never a dense 7×7 C→C conv: ~6× the MACs, measured slower.

/// <summary>Pruning rule for <see cref="ConvNeXtBlock"/>.</summary>
internal sealed class ConvNeXtBlockRule : IBlockRule
{
    public IReadOnlyCollection<Type> BlockTypes { get; } =
        [typeof(ConvNeXtBlock), typeof(ProgressiveConvNeXtBlock), typeof(MergedConvNeXtBlock)];

    public BlockForm FormOf(nn.Module block) => block switch
    {
        ConvNeXtBlock => BlockForm.Original,
        ProgressiveConvNeXtBlock => BlockForm.Pruned,
        MergedConvNeXtBlock => BlockForm.Merged,
        _ => throw new ArgumentException($"not a ConvNeXt block: {block.GetType().Name}", nameof(block)),
    };

    public nn.Module<Tensor, Tensor> Prune(nn.Module block) => block is ConvNeXtBlock original
        ? new ProgressiveConvNeXtBlock(original)
        : throw new ArgumentException($"only an original ConvNeXt block can be pruned, not a {block.GetType().Name}", nameof(block));

    public nn.Module<Tensor, Tensor> Unprune(nn.Module prunedBlock) => prunedBlock is ProgressiveConvNeXtBlock p
        ? p.Original
        : throw new ArgumentException($"only a pruned ConvNeXt block can be unpruned, not a {prunedBlock.GetType().Name}", nameof(prunedBlock));

    public nn.Module<Tensor, Tensor> Merge(nn.Module prunedBlock)
    {
        if (prunedBlock is not ProgressiveConvNeXtBlock p)
        {
            throw new ArgumentException($"only a pruned ConvNeXt block can be merged, not a {prunedBlock.GetType().Name}", nameof(prunedBlock));
        }
        // Built outside the dispose scope below, which frees only the intermediate tensors.
        var merged = new MergedConvNeXtBlock(p.Dim, p.ConvDw.KernelSize);
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            static Tensor F64(Tensor t) => t.detach().to_type(ScalarType.Float64);
            var bn = p.BatchNorm;
            var (dwWeight, dwBias) = MergeMath.FoldBatchNorm(F64(p.ConvDw.Weight), F64(p.ConvDw.Bias),
                F64(bn.running_mean!), F64(bn.running_var!), F64(bn.weight), F64(bn.bias!), bn.eps);
            var (w1, b1) = p.Mlp.Fc1;
            var (w2, b2) = p.Mlp.Fc2;
            var (pwWeight, pwBias) = MergeMath.ComposeLinear(F64(w1), F64(b1), F64(w2), F64(b2));
            (pwWeight, pwBias) = MergeMath.ScaleRows(F64(p.Gamma), pwWeight, pwBias);
            merged.ConvDw.Weight.copy_(dwWeight);
            merged.ConvDw.Bias.copy_(dwBias);
            merged.Pw.weight.copy_(pwWeight);
            merged.Pw.bias!.copy_(pwBias);
            return merged;
        }
        catch
        {
            merged.Dispose();
            throw;
        }
    }
}

/// <summary>
/// A <see cref="ConvNeXtBlock"/>'s progressive form: the same conv_dw, norm, mlp and gamma (shared
/// modules, so the parameter names stay <c>conv_dw.weight</c>, <c>mlp.fc1.weight</c>, …) plus
/// <c>bn</c>, a batch norm over the channels of the channels-last map (batch×H×W as its batch).
/// </summary>
internal sealed class ProgressiveConvNeXtBlock : nn.Module<Tensor, Tensor>, IProgressiveBlock, IMacCounter
{
    private readonly long[] _normShape;
    private readonly double _normEps;
    // The block this one was made from, which owns the same modules; held outside a module-typed
    // field so that RegisterComponents does not register its parameters a second time.
    private readonly Func<ConvNeXtBlock> _original;
    private double _lambda;

#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly DepthwiseConv2d conv_dw;
    private readonly nn.Module<Tensor, Tensor> norm;
    private readonly BatchNorm1d bn;
    private readonly ConvNeXtMlp mlp;
    private readonly Parameter gamma;
    private readonly DropPath drop_path;
#pragma warning restore IDE1006

    public ProgressiveConvNeXtBlock(ConvNeXtBlock original) : base(nameof(ProgressiveConvNeXtBlock))
    {
        _normShape = [original.Dim];
        _normEps = original.NormEps;
        _original = () => original;
        conv_dw = original.ConvDw;
        norm = original.Norm;
        mlp = original.Mlp;
        gamma = original.Gamma;
        drop_path = original.DropPath;
        var (w, b) = original.NormParameters;
        bn = nn.BatchNorm1d(original.Dim, device: w.device, dtype: w.dtype);
        using (no_grad())
        {
            bn.weight.copy_(w);
            bn.bias!.copy_(b);
        }
        RegisterComponents();
    }

    public double Lambda
    {
        get => _lambda;
        set => _lambda = Progressive.CheckLambda(value);
    }

    public IReadOnlyList<BatchNorm> BatchNorms => [bn];

    public long Dim => _normShape[0];

    /// <summary>The original block, sharing conv_dw, norm, mlp and gamma with this one.</summary>
    public ConvNeXtBlock Original => _original();

    public DepthwiseConv2d ConvDw => conv_dw;

    public BatchNorm1d BatchNorm => bn;

    public ConvNeXtMlp Mlp => mlp;

    public Parameter Gamma => gamma;

    public override Tensor forward(Tensor input)
    {
        // The same operations as ConvNeXtBlock.forward, so that λ=0 reproduces it bit for bit.
        var x = conv_dw.call(input).permute(0, 2, 3, 1);
        x = Progressive.Norm(x, LayerNorm, BatchNormChannelsLast, _lambda);
        var (w1, b1) = mlp.Fc1;
        var (w2, b2) = mlp.Fc2;
        var h = Progressive.Activation(nn.functional.linear(x, w1, b1), t => nn.functional.gelu(t), _lambda);
        x = (nn.functional.linear(h, w2, b2) * gamma).permute(0, 3, 1, 2);
        return drop_path.call(x).Plus(input);
    }

    public long CountMacs(Tensor input, Tensor output)
    {
        var (w1, _) = mlp.Fc1;
        var positions = input.numel() / input.shape[1];
        return conv_dw.CountMacs(input, output) + (2 * positions * w1.shape[0] * w1.shape[1]);
    }

    private Tensor LayerNorm(Tensor x)
    {
        var (w, b) = ConvNeXtBlock.NormAffine(norm);
        return nn.functional.layer_norm(x, _normShape, w, b, _normEps);
    }

    private Tensor BatchNormChannelsLast(Tensor x) => bn.call(x.reshape(-1, x.shape[^1])).view(x.shape);
}

/// <summary>
/// A pruned ConvNeXt block at λ=1, merged: <c>conv_dw</c> (7×7 depthwise, BN folded in) → <c>pw</c>
/// (one C→C Linear on the channels-last map, = diag(gamma)·fc2·fc1) → +x.
/// </summary>
internal sealed class MergedConvNeXtBlock : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // Parameter names follow timm's conventions.
    private readonly DepthwiseConv2d conv_dw;
    private readonly Linear pw;
#pragma warning restore IDE1006

    public MergedConvNeXtBlock(long dim, int kernelSize) : base(nameof(MergedConvNeXtBlock))
    {
        conv_dw = new DepthwiseConv2d(dim, kernelSize);
        pw = nn.Linear(dim, dim);
        RegisterComponents();
    }

    public DepthwiseConv2d ConvDw => conv_dw;

    public Linear Pw => pw;

    public override Tensor forward(Tensor input) =>
        pw.call(conv_dw.call(input).permute(0, 2, 3, 1)).permute(0, 3, 1, 2).Plus(input);
}
