namespace Updp.Models;

/// <summary>
/// One model family, registered by implementing this interface: a non-abstract class of this
/// assembly with a parameterless constructor, found by <see cref="ModelFamilies"/>, so that no
/// generic code lists the families. The class also implements the capabilities other layers ask a
/// family for (its block rules, ONNX emitters and state-dict adapter); each layer declares its own
/// capability interface, derived from this one, and looks it up in <see cref="ModelFamilies.All"/>.
/// </summary>
public interface IModelFamily
{
    /// <summary>The family name, the <see cref="ModelVariant.Family"/> of each of its variants (e.g. <c>resnet</c>).</summary>
    string Name { get; }

    /// <summary>The family's name as written for people, e.g. in help texts.</summary>
    string DisplayName { get; }

    /// <summary>
    /// Whether its models have a per-channel layer scale, whose initial value
    /// <see cref="ModelConfig.LayerScaleInit"/> sets.
    /// </summary>
    bool HasLayerScale { get; }

    /// <summary>Its named configurations (timm's registry entries), each with <see cref="ModelVariant.Family"/> = <see cref="Name"/>.</summary>
    IEnumerable<ModelVariant> Variants { get; }
}
