using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Checkpoints;

/// <summary>The outcome of <see cref="Checkpoint.LoadForTransfer"/>.</summary>
/// <param name="Model">The model, in training mode.</param>
/// <param name="Replaced">Tensors not taken from the checkpoint as they were: re-initialised classifier tensors and adapted stem convs.</param>
/// <param name="Adapted">The stem convs among them, adapted to the new input channels.</param>
/// <param name="Source">The configuration of the checkpoint's model.</param>
/// <param name="Meta">The checkpoint's sidecar, or null for a bare state dict.</param>
public sealed record TransferResult(ImageClassifier Model, IReadOnlyList<string> Replaced, IReadOnlyList<string> Adapted, ModelConfig Source, CheckpointMeta? Meta);

/// <summary>
/// Which tensors of a checkpoint change when its model is fine-tuned to other classes or input
/// channels, found from the shapes alone (so it works the same for every family): a tensor whose
/// first dimension is the old class count where the model has the new one is the classifier; a 4-D
/// tensor whose second dimension is the old channel count where the model has the new one is the stem.
/// </summary>
internal static class TransferAdapter
{
    public static (Dictionary<string, Tensor> Source, List<(string Name, bool Adapted)> Replaced, List<Tensor> Created) Adapt(
        IReadOnlyDictionary<string, Tensor> target, IReadOnlyDictionary<string, Tensor> source, ModelConfig from, ModelConfig to)
    {
        var result = new Dictionary<string, Tensor>(source);
        var replaced = new List<(string, bool)>();
        var created = new List<Tensor>();
        using var _ = no_grad();
        foreach (var (name, dst) in target)
        {
            if (!source.TryGetValue(name, out var src) || src.shape.AsSpan().SequenceEqual(dst.shape))
            {
                continue;
            }

            if (from.NumClasses != to.NumClasses && src.dim() == dst.dim() && src.shape[0] == from.NumClasses && dst.shape[0] == to.NumClasses
                && src.shape.AsSpan(1).SequenceEqual(dst.shape.AsSpan(1)))
            {
                // The model's own fresh initialisation stands in for the old classifier.
                var fresh = dst.detach().clone();
                created.Add(fresh);
                result[name] = fresh;
                replaced.Add((name, false));
            }
            else if (from.InChans != to.InChans && src.dim() == 4 && dst.dim() == 4 && src.shape[1] == from.InChans && dst.shape[1] == to.InChans
                && src.shape[0] == dst.shape[0] && src.shape[2] == dst.shape[2] && src.shape[3] == dst.shape[3])
            {
                var adapted = AdaptInputConv(src, (int)to.InChans);
                created.Add(adapted);
                result[name] = adapted;
                replaced.Add((name, true));
            }
        }

        return (result, replaced, created);
    }

    /// <summary>
    /// timm's <c>adapt_input_conv</c>: to one channel, the sum over the input channels (a gray
    /// image seen as R = G = B gives the same response); from one channel or to more than three,
    /// the channels repeated and scaled by (old count / new count) so the response to a constant
    /// image is kept.
    /// </summary>
    public static Tensor AdaptInputConv(Tensor weight, int inChans)
    {
        var old = (int)weight.shape[1];
        var w = weight.to_type(ScalarType.Float32);
        if (inChans == 1)
        {
            return w.sum(1, keepdim: true);
        }

        var repeat = (inChans + old - 1) / old;
        using var repeated = w.repeat(1, repeat, 1, 1);
        using var sliced = repeated.narrow(1, 0, inChans);
        return sliced.mul((double)old / inChans);
    }
}
