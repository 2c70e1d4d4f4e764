using Updp.Checkpoints;
using Updp.Export;
using Updp.Pruning.Blocks;

namespace Updp.Models.ResNet;

/// <summary>
/// ResNet's registration, found by <see cref="ModelFamilies"/>: torchvision's variants
/// (<see cref="ResNet.Variants"/>), the rule for <see cref="BasicBlock"/> and <see cref="Bottleneck"/>
/// in all their forms, the ONNX emitters of its modules and the adapter for torchvision and timm
/// state dicts (both use our names).
/// </summary>
internal sealed class ResNetFamily : IPrunableFamily, IExportableFamily, ICheckpointFamily
{
    public string Name => "resnet";

    public string DisplayName => "ResNet";

    public bool HasLayerScale => false;

    public IEnumerable<ModelVariant> Variants => ResNet.Variants();

    public IEnumerable<IBlockRule> BlockRules => [new ResNetBlockRule()];

    public IEnumerable<IOnnxEmitter> OnnxEmitters => ResNetOnnx.Emitters();

    public StateDictAdapter StateDictAdapter { get; } = new(ResNet.InferConfig);
}
