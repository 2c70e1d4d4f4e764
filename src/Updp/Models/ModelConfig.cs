using System.Text.Json.Serialization;

namespace Updp.Models;

/// <summary>
/// Everything needed to rebuild a model's structure: a registered variant name plus the settings a
/// user may change. Stored in every checkpoint's sidecar so a checkpoint loads without flags.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>Registered variant name, e.g. <c>convnext_atto</c>.</summary>
    [JsonPropertyName("name")] public required string Name { get; init; }

    [JsonPropertyName("in_chans")] public int InChans { get; init; } = 3;

    [JsonPropertyName("num_classes")] public int NumClasses { get; init; } = 1000;

    /// <summary>
    /// Stride of the stem; null means the family's default. What it sets is the family's to say (its
    /// model class does): a patchify conv's stride and kernel, a patch size, the stride of a stem
    /// conv, or a choice between stems. Small inputs such as 32×32 keep more spatial detail with a
    /// smaller stem stride.
    /// </summary>
    [JsonPropertyName("stem_stride")] public int? StemStride { get; init; }

    /// <summary>
    /// Input side the model is built for (timm's <c>img_size</c>), for families whose parameters
    /// depend on it (<see cref="ModelVariant.FixedInputSize"/>: a position embedding with one row per
    /// patch, say); null means the family default. Other families take any input size and ignore it.
    /// </summary>
    [JsonPropertyName("img_size")] public int? ImgSize { get; init; }

    /// <summary>Stochastic-depth rate of the last block; earlier blocks get linearly less.</summary>
    [JsonPropertyName("drop_path_rate")] public double DropPathRate { get; init; }

    /// <summary>
    /// Initial value of the per-channel layer scale (timm's <c>ls_init_value</c>; null = 1e-6). Only
    /// affects freshly initialised models: short trainings from scratch converge faster with larger values.
    /// </summary>
    [JsonPropertyName("ls_init_value")] public double? LayerScaleInit { get; init; }

    /// <summary>
    /// A configuration for inputs of the given side: an explicit stem stride wins; otherwise inputs
    /// of at most 64 px get the family's small-input stem and larger ones the family default.
    /// Families with a fixed input size are built for this one.
    /// </summary>
    public static ModelConfig ForInput(string name, int inputSize, int inChans, int numClasses, int? stemStride = null)
    {
        var variant = ModelRegistry.Get(name);
        return new()
        {
            Name = name,
            InChans = inChans,
            NumClasses = numClasses,
            StemStride = stemStride ?? (inputSize <= 64 ? variant.SmallInputStemStride : null),
            ImgSize = variant.FixedInputSize ? inputSize : null,
        };
    }

    /// <summary>The settings the tool uses for 32×32 one-channel images with 10 classes.</summary>
    public static ModelConfig SmallInput(string name, int numClasses = 10, int inChans = 1) => ForInput(name, 32, inChans, numClasses);
}
