using Updp.Models;
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

/// <summary>
/// A model family whose state dicts from outside Updp (timm's, torchvision's) load: the capability
/// <see cref="StateDictAdapters"/> asks families for.
/// </summary>
internal interface ICheckpointFamily : IModelFamily
{
    /// <summary>How such a state dict maps onto the family's parameter names and configuration.</summary>
    StateDictAdapter StateDictAdapter { get; }
}

/// <summary>
/// The <see cref="StateDictAdapter"/> of each model family, by family name: those of every
/// <see cref="ICheckpointFamily"/> in <see cref="ModelFamilies.All"/>, and any added with <see cref="Register"/>.
/// </summary>
public static class StateDictAdapters
{
    private static readonly Dictionary<string, StateDictAdapter> Adapters =
        ModelFamilies.All.OfType<ICheckpointFamily>().ToDictionary(f => f.Name, f => f.StateDictAdapter, StringComparer.Ordinal);

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
    /// The tensor <paramref name="name"/> of <paramref name="stateDict"/>, which must have
    /// <paramref name="dims"/> dimensions: for an adapter's <see cref="StateDictAdapter.InferConfig"/>.
    /// </summary>
    /// <exception cref="CheckpointException">The tensor is missing or has another number of dimensions.</exception>
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
