using System.Text.RegularExpressions;
using TorchSharp;
using Updp.Models;
using Updp.Tests.Pruning;
using static TorchSharp.torch;

namespace Updp.Tests.Models;

internal static partial class DeiTTestSupport
{
    public const string Tiny = "deit_tiny_patch16_224";

    /// <summary>The small-input deit_tiny (32×32, patch 4, one channel, 10 classes) with <see cref="Randomize"/>d weights.</summary>
    public static ImageClassifier SmallTiny(int seed)
    {
        var model = ModelRegistry.Create(ModelConfig.SmallInput(Tiny));
        Randomize(model, seed);
        return model;
    }

    /// <summary>
    /// <see cref="PruningTestSupport.Randomize"/>, then DeiT's LayerNorm weights (norm1, norm2, norm)
    /// around 1 and the class token and position embedding of the size of a patch embedding, so
    /// that neither is negligible.
    /// </summary>
    public static void Randomize(nn.Module model, int seed)
    {
        PruningTestSupport.Randomize(model, seed);
        var g = new Generator((ulong)seed + 1000);
        using var _ = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            using var r = randn(p.shape, generator: g);
            if (NormWeight().IsMatch(name))
            {
                p.copy_(1 + (0.2 * r));
            }
            else if (name is "cls_token" or "pos_embed")
            {
                p.copy_(0.5 * r);
            }
        }
    }

    [GeneratedRegex(@"(^|\.)norm\d?\.weight$")]
    private static partial Regex NormWeight();
}
