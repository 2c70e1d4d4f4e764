using TorchSharp;
using static TorchSharp.torch;
using Updp.Models;

namespace Updp.Pruning.Blocks;

/// <summary>
/// The progressive drop form of any block (docs/METHOD.md#progressive-drop): (1−λ)·B(x) + λ·D(x)
/// with B the original block and D its dropped form, one module for every family. It registers the
/// original block's own children, parameters and buffers under their own names, so a checkpoint
/// names them as it names the original block's, and holds B and D outside module-typed fields so
/// that nothing is registered twice. D must share every tensor it has with B (the shortcut a
/// strided block keeps, say).
/// </summary>
internal sealed class FadingBlock : nn.Module<Tensor, Tensor>, IFadingBlock
{
    private readonly Func<nn.Module<Tensor, Tensor>> _original;
    private readonly Func<nn.Module<Tensor, Tensor>> _dropped;
    private double _lambda;

    /// <exception cref="ArgumentException"><paramref name="dropped"/> has a tensor that is not one of <paramref name="original"/>'s.</exception>
    public FadingBlock(nn.Module<Tensor, Tensor> original, nn.Module<Tensor, Tensor> dropped) : base(nameof(FadingBlock))
    {
        ArgumentNullException.ThrowIfNull(original);
        ArgumentNullException.ThrowIfNull(dropped);
        // Tensors live in modules: every module of the dropped form that holds one must be one of the original's.
        var own = original.modules().ToHashSet(ReferenceEqualityComparer.Instance);
        if (dropped.named_modules().FirstOrDefault(m => !own.Contains(m.module)
                && (m.module.named_parameters(recurse: false).Any() || m.module.named_buffers(recurse: false).Any())) is { module: { } foreign } found)
        {
            throw new ArgumentException(
                $"the dropped form's module '{found.name}' ({foreign.GetType().Name}) is not the original block's; a dropped form must keep the block's own modules", nameof(dropped));
        }
        _original = () => original;
        _dropped = () => dropped;
        foreach (var (name, child) in original.named_children())
        {
            register_module(name, child);
        }
        foreach (var (name, parameter) in original.named_parameters(recurse: false))
        {
            register_parameter(name, parameter);
        }
        foreach (var (name, buffer) in original.named_buffers(recurse: false))
        {
            register_buffer(name, buffer);
        }
    }

    public double Lambda
    {
        get => _lambda;
        set => _lambda = Progressive.CheckLambda(value);
    }

    /// <summary>The block as it was before it began to fade, sharing every tensor with this one.</summary>
    public nn.Module<Tensor, Tensor> Original => _original();

    /// <summary>What is left of the block at λ=1 (<see cref="IBlockRule.Drop"/>).</summary>
    public nn.Module<Tensor, Tensor> Dropped => _dropped();

    // The endpoints run one form only: λ=0 is the original block bit for bit (its batch norms, if
    // any, update as they would), λ=1 the dropped form (the branch gets no gradient).
    public override Tensor forward(Tensor input) => _lambda switch
    {
        0 => Original.forward(input),
        1 => Dropped.forward(input),
        _ => Original.forward(input).Times(1 - _lambda).Plus(Dropped.forward(input).Times(_lambda)),
    };
}
