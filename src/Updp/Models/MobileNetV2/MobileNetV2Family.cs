using Updp.Checkpoints;
using Updp.Export;
using Updp.Pruning.Blocks;

namespace Updp.Models.MobileNetV2;

/// <summary>
/// MobileNetV2's registration, found by <see cref="ModelFamilies"/>: three width multipliers
/// (<see cref="MobileNetV2.Variants"/>), the rule for <see cref="InvertedResidual"/> in its three
/// forms, the ONNX emitters of its modules and the adapter for torchvision state dicts (our names)
/// and timm's (renamed by <see cref="MobileNetV2.TimmKey"/>).
/// </summary>
internal sealed class MobileNetV2Family : IPrunableFamily, IExportableFamily, ICheckpointFamily
{
    public string Name => "mobilenetv2";

    public string DisplayName => "MobileNetV2";

    public bool HasLayerScale => false;

    public IEnumerable<ModelVariant> Variants => MobileNetV2.Variants();

    public IEnumerable<IBlockRule> BlockRules => [new InvertedResidualRule()];

    public IEnumerable<IOnnxEmitter> OnnxEmitters => MobileNetV2Onnx.Emitters();

    public StateDictAdapter StateDictAdapter { get; } = new(MobileNetV2.InferConfig, MobileNetV2.TimmKey);
}
