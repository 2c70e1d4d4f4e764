using System.Text.Json;
using System.Text.Json.Serialization;
using Updp.Checkpoints;
using Updp.Data;

namespace Updp.Training;

/// <summary>
/// Which training images a run held out for validation (<see cref="DataSplits.Create"/>'s count and
/// seed; a null count means the data set's default). Training runs record it in their checkpoints' sidecars under <c>extra.split</c>, so that
/// the pruning stages that start from a checkpoint hold out the same images: the subnet search must
/// score on images the supernet was not trained on.
/// </summary>
public sealed record ValidationSplit(
    [property: JsonPropertyName("validation_count")] int? ValidationCount,
    [property: JsonPropertyName("seed")] int Seed)
{
    /// <summary>The key under <see cref="CheckpointMeta.Extra"/>.</summary>
    public const string ExtraKey = "split";

    /// <summary>The split a sidecar records, or null when it records none.</summary>
    /// <exception cref="CheckpointException">The recorded split is not valid JSON for a split.</exception>
    public static ValidationSplit? FromMeta(CheckpointMeta? meta)
    {
        if (meta?.Extra?[ExtraKey] is not { } node)
        {
            return null;
        }
        try
        {
            return node.Deserialize<ValidationSplit>() ?? throw new CheckpointException($"the sidecar's extra.{ExtraKey} is null");
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"the sidecar's extra.{ExtraKey} is not a validation split: {e.Message}", e);
        }
    }

    /// <summary>A copy of <paramref name="meta"/> that records this split; the given sidecar is not modified.</summary>
    public CheckpointMeta AddTo(CheckpointMeta meta)
    {
        ArgumentNullException.ThrowIfNull(meta);
        var extra = meta.Extra?.DeepClone().AsObject() ?? [];
        extra[ExtraKey] = JsonSerializer.SerializeToNode(this);
        return meta with { Extra = extra };
    }
}
