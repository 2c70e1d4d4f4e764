using Updp.Models;
using Updp.Models.MobileNetV2;
using Updp.Models.ResNet;
using static TorchSharp.torch;

namespace Updp.Checkpoints;

/// <summary>
/// How a state dict from outside Updp (no sidecar) maps onto one model family.
/// </summary>
/// <param name="InferConfig">
/// Given the registered model name, the state dict (already in the family's names) and the source
/// name for messages, returns the configuration whose model the tensors fit: class count, input
/// channels, stem stride and so on. Throws <see cref="CheckpointException"/> when it cannot tell.
/// </param>
/// <param name="MapKey">
/// Optional naming filter from the checkpoint's names to the family's (null drops a tensor);
/// applied after DataParallel's <c>module.</c> prefix is removed and before <paramref name="InferConfig"/>.
/// </param>
public sealed record StateDictAdapter(
    Func<string, IReadOnlyDictionary<string, Tensor>, string, ModelConfig> InferConfig,
    Func<string, string?>? MapKey = null);

/// <summary>The <see cref="StateDictAdapter"/> of each model family, by family name.</summary>
public static class StateDictAdapters
{
    private static readonly Dictionary<string, StateDictAdapter> Adapters = new(StringComparer.Ordinal)
    {
        ["convnext"] = new StateDictAdapter(InferConvNeXt),
        ["deit"] = new StateDictAdapter(InferDeiT),
        ["resnet"] = new StateDictAdapter(ResNet.InferConfig),
        ["mobilenetv2"] = new StateDictAdapter(InferMobileNetV2, MobileNetV2.TimmKey),
    };

    private static readonly Lock Gate = new();

    /// <summary>Adds or replaces the adapter of a family.</summary>
    public static void Register(string family, StateDictAdapter adapter)
    {
        lock (Gate)
        {
            Adapters[family] = adapter;
        }
    }

    /// <summary>The adapter of a family, or null when the family has none.</summary>
    public static StateDictAdapter? Find(string family)
    {
        lock (Gate)
        {
            return Adapters.GetValueOrDefault(family);
        }
    }

    /// <summary>
    /// ConvNeXt (timm names): input channels from <c>stem.0.weight</c> [C0, in_chans, k, k], stem
    /// stride from its kernel size k (the patchify stem's kernel equals its stride), classes from
    /// <c>head.fc.weight</c> [num_classes, C].
    /// </summary>
    internal static ModelConfig InferConvNeXt(string modelName, IReadOnlyDictionary<string, Tensor> stateDict, string sourceName)
    {
        var stem = Require(stateDict, "stem.0.weight", 4, sourceName);
        var fc = Require(stateDict, "head.fc.weight", 2, sourceName);
        if (stem.shape[2] != stem.shape[3])
        {
            throw new CheckpointException(
                $"'{sourceName}': stem.0.weight has a non-square kernel [{string.Join(", ", stem.shape)}]; ConvNeXt's patchify stem is square", sourceName);
        }
        return new ModelConfig
        {
            Name = modelName,
            InChans = checked((int)stem.shape[1]),
            NumClasses = checked((int)fc.shape[0]),
            StemStride = checked((int)stem.shape[2]),
        };
    }

    /// <summary>
    /// DeiT (timm names): input channels and patch size from <c>patch_embed.proj.weight</c>
    /// [D, in_chans, p, p], input size from <c>pos_embed</c> [1, (img/p)² + 1, D], classes from
    /// <c>head.weight</c> [num_classes, D].
    /// </summary>
    internal static ModelConfig InferDeiT(string modelName, IReadOnlyDictionary<string, Tensor> stateDict, string sourceName)
    {
        var proj = Require(stateDict, "patch_embed.proj.weight", 4, sourceName);
        var pos = Require(stateDict, "pos_embed", 3, sourceName);
        var head = Require(stateDict, "head.weight", 2, sourceName);
        if (proj.shape[2] != proj.shape[3])
        {
            throw new CheckpointException(
                $"'{sourceName}': patch_embed.proj.weight has a non-square kernel [{string.Join(", ", proj.shape)}]; DeiT's patches are square", sourceName);
        }
        var patches = pos.shape[1] - 1;
        var grid = (long)Math.Round(Math.Sqrt(patches));
        if (patches < 1 || grid * grid != patches)
        {
            throw new CheckpointException(
                $"'{sourceName}': pos_embed has shape [{string.Join(", ", pos.shape)}]; expected 1 + a square number of rows (class token + patch grid)", sourceName);
        }
        return new ModelConfig
        {
            Name = modelName,
            InChans = checked((int)proj.shape[1]),
            NumClasses = checked((int)head.shape[0]),
            StemStride = checked((int)proj.shape[2]),
            ImgSize = checked((int)(grid * proj.shape[2])),
        };
    }

    /// <summary>
    /// MobileNetV2 (torchvision names; timm's are mapped by <see cref="MobileNetV2.TimmKey"/>): input
    /// channels from <c>features.0.0.weight</c> [C0, in_chans, 3, 3], classes from
    /// <c>classifier.1.weight</c> [num_classes, C]. The stem stride is not in the tensors (the stem
    /// kernel is 3×3 at any stride), so it is the family default, 2, as in torchvision and timm.
    /// </summary>
    internal static ModelConfig InferMobileNetV2(string modelName, IReadOnlyDictionary<string, Tensor> stateDict, string sourceName)
    {
        var stem = Require(stateDict, "features.0.0.weight", 4, sourceName);
        var fc = Require(stateDict, "classifier.1.weight", 2, sourceName);
        return new ModelConfig
        {
            Name = modelName,
            InChans = checked((int)stem.shape[1]),
            NumClasses = checked((int)fc.shape[0]),
        };
    }

    internal static Tensor Require(IReadOnlyDictionary<string, Tensor> stateDict, string name, int dims, string sourceName)
    {
        if (!stateDict.TryGetValue(name, out var t))
        {
            throw new CheckpointException(
                $"'{sourceName}' has no tensor '{name}', which is needed to infer the model's configuration; is it a checkpoint of this model family?", sourceName);
        }
        if (t.shape.Length != dims)
        {
            throw new CheckpointException(
                $"'{sourceName}': '{name}' has shape [{string.Join(", ", t.shape)}], expected {dims} dimensions", sourceName);
        }
        return t;
    }
}
