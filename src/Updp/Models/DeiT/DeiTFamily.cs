using Updp.Checkpoints;
using Updp.Export;
using Updp.Pruning.Blocks;

namespace Updp.Models.DeiT;

/// <summary>
/// DeiT's registration, found by <see cref="ModelFamilies"/>: timm's variants
/// (<see cref="DeiT.Variants"/>, each built for one input size), the rule for <see cref="DeiTBlock"/>
/// in its three forms, the ONNX emitters of its modules and the adapter for timm state dicts
/// (timm's names are ours).
/// </summary>
internal sealed class DeiTFamily : IPrunableFamily, IExportableFamily, ICheckpointFamily
{
    public string Name => "deit";

    public string DisplayName => "DeiT";

    public bool HasLayerScale => false;

    public IEnumerable<ModelVariant> Variants => DeiT.Variants();

    public IEnumerable<IBlockRule> BlockRules => [new DeiTBlockRule()];

    public IEnumerable<IOnnxEmitter> OnnxEmitters => DeiTOnnx.Emitters();

    public StateDictAdapter StateDictAdapter { get; } = new(DeiT.InferConfig);
}
