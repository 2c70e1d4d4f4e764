using Updp.Checkpoints;
using Updp.Export;
using Updp.Pruning.Blocks;

namespace Updp.Models.ConvNeXt;

/// <summary>
/// ConvNeXt V1's registration, found by <see cref="ModelFamilies"/>: timm's variants
/// (<see cref="ConvNeXt.Variants"/>), the rule for <see cref="ConvNeXtBlock"/> in its three forms,
/// the ONNX emitters of its modules and the adapter for timm state dicts (timm's names are ours).
/// </summary>
internal sealed class ConvNeXtFamily : IPrunableFamily, IExportableFamily, ICheckpointFamily
{
    public string Name => "convnext";

    public string DisplayName => "ConvNeXt";

    public bool HasLayerScale => true;

    public IEnumerable<ModelVariant> Variants => ConvNeXt.Variants();

    public IEnumerable<IBlockRule> BlockRules => [new ConvNeXtBlockRule()];

    public IEnumerable<IOnnxEmitter> OnnxEmitters => ConvNeXtOnnx.Emitters();

    public StateDictAdapter StateDictAdapter { get; } = new(ConvNeXt.InferConfig);
}
