using TorchSharp;
using TorchSharp.Modules;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Models.DeiT;

// DeiT's forms (docs/METHOD.md#deit). Pruned: norm2 → BN over D (batch×tokens as its batch), GELU → identity;
// attention stays. Then the MLP branch with its residual, x ↦ x + fc2(fc1(BN(x))), is affine in x.
// Merged: x + attn(norm1(x)) as before, then ONE Linear D→D: W = I + W2·W1·diag(s),
// b = W2·(W1·(β − s⊙μ) + b1) + b2 with s = γ/√(σ²+ε) (8·D² MACs per token become D²).

/// <summary>Pruning rule for <see cref="DeiTBlock"/>.</summary>
internal sealed class DeiTBlockRule : IBlockRule
{
    public IReadOnlyCollection<Type> BlockTypes { get; } = [typeof(DeiTBlock), typeof(ProgressiveDeiTBlock), typeof(MergedDeiTBlock)];

    public BlockForm FormOf(nn.Module block) => block switch
    {
        DeiTBlock => BlockForm.Original,
        ProgressiveDeiTBlock => BlockForm.Pruned,
        MergedDeiTBlock => BlockForm.Merged,
        _ => throw new ArgumentException($"not a DeiT block: {block.GetType().Name}", nameof(block)),
    };

    public nn.Module<Tensor, Tensor> Prune(nn.Module block) => block is DeiTBlock original
        ? new ProgressiveDeiTBlock(original)
        : throw new ArgumentException($"only an original DeiT block can be pruned, not a {block.GetType().Name}", nameof(block));

    public nn.Module<Tensor, Tensor> Unprune(nn.Module prunedBlock) => prunedBlock is ProgressiveDeiTBlock p
        ? p.Original
        : throw new ArgumentException($"only a pruned DeiT block can be unpruned, not a {prunedBlock.GetType().Name}", nameof(prunedBlock));

    public nn.Module<Tensor, Tensor> Merge(nn.Module prunedBlock)
    {
        if (prunedBlock is not ProgressiveDeiTBlock p)
        {
            throw new ArgumentException($"only a pruned DeiT block can be merged, not a {prunedBlock.GetType().Name}", nameof(prunedBlock));
        }
        var original = p.Original;
        // Built outside the dispose scope below, which frees only the intermediate tensors.
        var merged = new MergedDeiTBlock(original.Dim, original.Attn.NumHeads);
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            static Tensor F64(Tensor t) => t.detach().to_type(ScalarType.Float64);
            var bn = p.BatchNorm;
            var fc1 = original.Mlp.Fc1;
            var fc2 = original.Mlp.Fc2;
            var (w1, b1) = MergeMath.FoldInputBatchNorm(F64(fc1.weight), F64(fc1.bias!),
                F64(bn.running_mean!), F64(bn.running_var!), F64(bn.weight), F64(bn.bias!), bn.eps);
            var (w, b) = MergeMath.ComposeLinear(w1, b1, F64(fc2.weight), F64(fc2.bias!));
            merged.Fc.weight.copy_(MergeMath.AddIdentity(w));
            merged.Fc.bias!.copy_(b);
            // Attention and norm1 are kept as they are, copied so the merged block owns its tensors.
            var source = original.named_parameters().ToDictionary(n => n.name, n => n.parameter);
            foreach (var (name, target) in merged.named_parameters().Where(n => !n.name.StartsWith("fc.", StringComparison.Ordinal)))
            {
                target.copy_(source[name]);
            }
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
/// A <see cref="DeiTBlock"/>'s progressive form: the same norm1, attn, norm2 and mlp (shared modules,
/// so the parameter names stay <c>attn.qkv.weight</c>, <c>mlp.fc1.weight</c>, …) plus <c>bn</c>, a
/// batch norm over the channels with batch×tokens as its batch, mixed with norm2 by λ.
/// </summary>
internal sealed class ProgressiveDeiTBlock : nn.Module<Tensor, Tensor>, IProgressiveBlock
{
    // The block this one was made from, which owns the same modules; held outside a module-typed
    // field so that RegisterComponents does not register its parameters a second time.
    private readonly Func<DeiTBlock> _original;
    private double _lambda;

#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly LayerNorm norm1;
    private readonly DeiTAttention attn;
    private readonly LayerNorm norm2;
    private readonly BatchNorm1d bn;
    private readonly DeiTMlp mlp;
    private readonly DropPath drop_path;
#pragma warning restore IDE1006

    public ProgressiveDeiTBlock(DeiTBlock original) : base(nameof(ProgressiveDeiTBlock))
    {
        _original = () => original;
        norm1 = original.Norm1;
        attn = original.Attn;
        norm2 = original.Norm2;
        mlp = original.Mlp;
        drop_path = original.DropPath;
        var (w, b) = (norm2.weight!, norm2.bias!);
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

    /// <summary>The original block, sharing norm1, attn, norm2 and mlp with this one.</summary>
    public DeiTBlock Original => _original();

    public BatchNorm1d BatchNorm => bn;

    public override Tensor forward(Tensor x)
    {
        // The same operations as DeiTBlock.forward, so that λ=0 reproduces it bit for bit.
        x = x.Plus(drop_path.call(attn.call(norm1.call(x))));
        var h = Progressive.Norm(x, t => norm2.call(t), TokenBatchNorm, _lambda);
        h = Progressive.Activation(mlp.Fc1.call(h), t => nn.functional.gelu(t), _lambda);
        return x.Plus(drop_path.call(mlp.Fc2.call(h)));
    }

    private Tensor TokenBatchNorm(Tensor x) => bn.call(x.reshape(-1, x.shape[^1])).view(x.shape);
}

/// <summary>
/// A pruned DeiT block at λ=1, merged: x + attn(norm1(x)), then <c>fc</c>, one D→D Linear that
/// holds the whole MLP branch with its residual (I + fc2·fc1·diag(s)).
/// </summary>
internal sealed class MergedDeiTBlock : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // Parameter names follow timm's conventions.
    private readonly LayerNorm norm1;
    private readonly DeiTAttention attn;
    private readonly Linear fc;
#pragma warning restore IDE1006

    public MergedDeiTBlock(long dim, int numHeads) : base(nameof(MergedDeiTBlock))
    {
        norm1 = nn.LayerNorm(dim, eps: DeiTBlock.NormEps);
        attn = new DeiTAttention(dim, numHeads);
        fc = nn.Linear(dim, dim);
        RegisterComponents();
    }

    public Linear Fc => fc;

    public override Tensor forward(Tensor x) => fc.call(x.Plus(attn.call(norm1.call(x))));
}
