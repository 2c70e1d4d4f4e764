using TorchSharp;
using TorchSharp.Modules;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Tests.Pruning;

internal static class PruningTestSupport
{
    /// <summary>The small-input convnext_atto (32×32, one channel, 10 classes) with <see cref="Randomize"/>d weights.</summary>
    public static ImageClassifier Atto(int seed)
    {
        var model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto"));
        Randomize(model, seed);
        return model;
    }

    /// <summary>
    /// Weights far from timm's near-identity init, so that every term of a merge matters: layer
    /// scales around ±0.5, LayerNorm and BatchNorm affines around 1 and 0, weights with unit-gain
    /// scale, biases around 0.1, BN running means around 0 and variances in [0.5, 2].
    /// </summary>
    public static void Randomize(nn.Module model, int seed)
    {
        var g = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            using var r = randn(p.shape, generator: g);
            if (name.EndsWith("gamma", StringComparison.Ordinal))
            {
                using var sign = rand(p.shape, generator: g).gt(0.2).to_type(p.dtype).mul_(2).sub_(1);
                p.copy_((0.5 + (0.1 * r)) * sign);
            }
            else if (p.dim() == 1 && IsNormWeight(name))
            {
                p.copy_(1 + (0.2 * r));
            }
            else if (p.dim() == 1)
            {
                p.copy_(0.1 * r);
            }
            else
            {
                p.copy_(r / Math.Sqrt(p.numel() / p.shape[0]));
            }
        }
        foreach (var bn in model.modules().OfType<BatchNorm>())
        {
            RandomizeStatistics(bn, g);
        }
    }

    public static void RandomizeStatistics(BatchNorm bn, Generator g)
    {
        using var _ = no_grad();
        using var mean = randn(bn.running_mean!.shape, generator: g);
        using var u = rand(bn.running_var!.shape, generator: g);
        bn.running_mean!.copy_(0.3 * mean);
        bn.running_var!.copy_(0.5 + (1.5 * u));
    }

    /// <summary>Prunes the given blocks, sets λ and gives their new batch norms random statistics and affines.</summary>
    public static void Prune(ImageClassifier model, IEnumerable<int> blocks, double lambda, int seed)
    {
        var g = new Generator((ulong)seed);
        foreach (var index in blocks)
        {
            var p = model.Prune(index);
            p.Lambda = lambda;
            foreach (var bn in p.BatchNorms)
            {
                RandomizeStatistics(bn, g);
                using var _ = no_grad();
                using var w = randn(bn.weight.shape, generator: g);
                bn.weight.add_(0.2 * w);
                bn.bias!.add_(0.1 * w.flip(0));
            }
        }
    }

    public static Tensor Input(int seed, int batch = 4) => randn([batch, 1, 32, 32], generator: new Generator((ulong)seed));

    public static float MaxAbsDiff(Tensor a, Tensor b)
    {
        using var d = (a - b).abs().max();
        return d.item<float>();
    }

    public static float MaxAbs(Tensor a)
    {
        using var d = a.abs().max();
        return d.item<float>();
    }

    private static bool IsNormWeight(string name) =>
        name.EndsWith("norm.weight", StringComparison.Ordinal) || name.EndsWith("bn.weight", StringComparison.Ordinal)
        || name.EndsWith(".1.weight", StringComparison.Ordinal) && name.StartsWith("stem", StringComparison.Ordinal)
        || name.EndsWith("downsample.0.weight", StringComparison.Ordinal);
}
