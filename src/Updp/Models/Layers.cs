using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Updp.Models;

/// <summary>
/// LayerNorm over the channels of an NCHW tensor (timm's <c>LayerNorm2d</c>): same parameters and
/// numerics as a channels-last LayerNorm, so checkpoints of either layout load into it.
/// </summary>
public sealed class LayerNorm2d : nn.Module<Tensor, Tensor>
{
    private readonly long[] _shape;
    private readonly double _eps;

#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly Parameter weight;
    private readonly Parameter bias;
#pragma warning restore IDE1006

    public LayerNorm2d(long channels, double eps = 1e-6) : base(nameof(LayerNorm2d))
    {
        _shape = [channels];
        _eps = eps;
        // Detached so that a model built inside a caller's dispose scope keeps its parameters.
        weight = new Parameter(ones(channels).DetachFromDisposeScope());
        bias = new Parameter(zeros(channels).DetachFromDisposeScope());
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public Parameter Bias => bias;

    public double Eps => _eps;

    public override Tensor forward(Tensor x) =>
        nn.functional.layer_norm(x.permute(0, 2, 3, 1), _shape, weight, bias, _eps).permute(0, 3, 1, 2);
}

/// <summary>Stochastic depth: drops a whole residual branch per sample while training.</summary>
public sealed class DropPath : nn.Module<Tensor, Tensor>
{
    private readonly double _p;

    public DropPath(double p) : base(nameof(DropPath)) => _p = p;

    public override Tensor forward(Tensor x)
    {
        if (!training || _p <= 0)
        {
            return x;
        }
        var keep = 1 - _p;
        var shape = new long[x.dim()];
        shape[0] = x.shape[0];
        for (var i = 1; i < shape.Length; i++)
        {
            shape[i] = 1;
        }
        var mask = empty(shape, x.dtype, x.device).bernoulli_(keep);
        return (x * mask).DividedBy(keep);
    }
}

internal static class ModuleLists
{
    /// <summary>Replaces entry <paramref name="index"/> and returns the old one.</summary>
    public static T Replace<T>(ModuleList<T> list, int index, T module) where T : nn.Module
    {
        var old = list[index];
        list[index] = module;
        // TorchSharp's indexer changes the list but not the registered submodules that
        // named_parameters() and state_dict() read. Re-registering from the index on keeps them in
        // list order (a removed name would otherwise come back at the end).
        for (var k = index; k < list.Count; k++)
        {
            list.register_module($"{k}", null!);
        }
        for (var k = index; k < list.Count; k++)
        {
            list.register_module($"{k}", list[k]);
        }
        return old;
    }
}

/// <summary>Weight initialisation shared by the families (timm's conventions).</summary>
internal static class Init
{
    /// <summary>Truncated normal (std 0.02, cut at ±2 like timm) for conv and linear weights, zero biases.</summary>
    public static void TruncNormalWeights(nn.Module module)
    {
        // TorchSharp 0.107's nn.init.trunc_normal_ fills the tensor with the std as a constant,
        // so we draw a normal and clamp it, which is what timm's cut at ±2 (absolute) amounts to.
        static void TruncNormal(Tensor w, Tensor? bias)
        {
            nn.init.normal_(w, 0, 0.02).clamp_(-2, 2);
            if (bias is not null)
            {
                nn.init.zeros_(bias);
            }
        }

        using var _ = no_grad();
        foreach (var (_, m) in module.named_modules())
        {
            switch (m)
            {
                case Conv2d conv:
                    TruncNormal(conv.weight, conv.bias);
                    break;
                case PatchConv2d patch:
                    TruncNormal(patch.Weight, patch.Bias);
                    break;
                case DepthwiseConv2d dw:
                    TruncNormal(dw.Weight, dw.Bias);
                    break;
                case Linear linear:
                    TruncNormal(linear.weight, linear.bias);
                    break;
            }
        }
    }
}
