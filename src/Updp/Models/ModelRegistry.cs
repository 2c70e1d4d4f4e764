namespace Updp.Models;

/// <summary>A named model configuration, as timm registers them.</summary>
/// <param name="Name">Registered name, e.g. <c>convnext_atto</c>.</param>
/// <param name="Family">Model family, e.g. <c>convnext</c>.</param>
/// <param name="Description">One line for <c>updp models</c>.</param>
/// <param name="SmallInputStemStride">Stem stride used for 32×32 inputs.</param>
/// <param name="Create">Builds the model with freshly initialised weights.</param>
/// <param name="FixedInputSize">
/// True when the model is built for one input size (<see cref="ModelConfig.ImgSize"/>), e.g. because a
/// position embedding has one row per patch.
/// </param>
public sealed record ModelVariant(
    string Name, string Family, string Description, int SmallInputStemStride, Func<ModelConfig, ImageClassifier> Create, bool FixedInputSize = false);

/// <summary>All model variants the tool knows, by name: those of every <see cref="ModelFamilies.All"/>.</summary>
public static class ModelRegistry
{
    private static readonly Dictionary<string, ModelVariant> Variants = new(StringComparer.Ordinal);

    static ModelRegistry()
    {
        foreach (var family in ModelFamilies.All)
        {
            foreach (var v in family.Variants)
            {
                if (v.Family != family.Name)
                {
                    throw new InvalidOperationException($"variant {v.Name} of model family '{family.Name}' says its family is '{v.Family}'");
                }
                if (!Variants.TryAdd(v.Name, v))
                {
                    throw new InvalidOperationException($"model variant {v.Name} is registered by families '{Variants[v.Name].Family}' and '{v.Family}'");
                }
            }
        }
    }

    public static IEnumerable<ModelVariant> All => Variants.Values.OrderBy(v => v.Family, StringComparer.Ordinal);

    public static bool Contains(string name) => Variants.ContainsKey(name);

    public static ModelVariant Get(string name) =>
        Variants.TryGetValue(name, out var v)
            ? v
            : throw new ArgumentException($"unknown model '{name}'; known models: {string.Join(", ", Variants.Keys.Order(StringComparer.Ordinal))}", nameof(name));

    /// <summary>Builds the model a configuration describes, with freshly initialised weights.</summary>
    public static ImageClassifier Create(ModelConfig config)
    {
        // A model is about to compute: make sure the machine's convolutions are right first.
        ConvolutionKernels.Check();
        return Get(config.Name).Create(config);
    }

    /// <summary>Builds a registered model with default settings (3 channels, 1000 classes).</summary>
    public static ImageClassifier Create(string name, int numClasses = 1000, int inChans = 3) =>
        Create(new ModelConfig { Name = name, NumClasses = numClasses, InChans = inChans });
}
