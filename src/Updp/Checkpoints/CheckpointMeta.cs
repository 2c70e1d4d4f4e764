using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Updp.Data;
using Updp.Models;

namespace Updp.Checkpoints;

/// <summary>
/// The JSON sidecar of an Updp checkpoint (<c>model.json</c> next to <c>model.safetensors</c>):
/// what is needed to rebuild the model without flags, plus training facts. Readers ignore keys
/// they do not know, so later features add theirs under <see cref="Extra"/> or as new properties.
/// </summary>
public sealed record CheckpointMeta
{
    /// <summary>The sidecar format this build writes; it reads this version and older ones.</summary>
    public const int CurrentFormatVersion = 1;

    /// <summary>Sidecar format version; <see cref="Checkpoint.Save"/> always writes <see cref="CurrentFormatVersion"/>.</summary>
    [JsonPropertyName("format_version")] public int FormatVersion { get; init; } = CurrentFormatVersion;

    /// <summary>The model's configuration; <see cref="Checkpoint.Save"/> fills it from the model it saves.</summary>
    [JsonPropertyName("model")] public ModelConfig? Model { get; init; }

    /// <summary>Class names in logit order; empty when unknown.</summary>
    [JsonPropertyName("classes")] public IReadOnlyList<string> Classes { get; init; } = [];

    /// <summary>Training epochs completed when saved, if the checkpoint comes from training.</summary>
    [JsonPropertyName("epoch")] public int? Epoch { get; init; }

    /// <summary>Named results such as <c>val_acc</c>; NaN and infinities are stored as JSON strings.</summary>
    [JsonPropertyName("metrics")] public IReadOnlyDictionary<string, double> Metrics { get; init; } = new Dictionary<string, double>();

    /// <summary>When the checkpoint was written; <see cref="Checkpoint.Save"/> sets it when null.</summary>
    [JsonPropertyName("created")] public DateTimeOffset? Created { get; init; }

    /// <summary>
    /// Ties the sidecar to its weights file: <see cref="Checkpoint.Save"/> writes a fresh id to both,
    /// and loading refuses a pair whose ids differ (a save interrupted between the two renames).
    /// </summary>
    [JsonPropertyName("weights_id")] public string? WeightsId { get; init; }

    /// <summary>How input images were prepared (input size, normalisation); null for foreign state dicts.</summary>
    [JsonPropertyName("preprocessing")] public Preprocessing? Preprocessing { get; init; }

    /// <summary>Room for later features (e.g. pruning state), each under its own key.</summary>
    [JsonPropertyName("extra")] public JsonObject? Extra { get; init; }
}
