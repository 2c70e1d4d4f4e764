using Updp.Checkpoints;
using Updp.Export;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

if (args.Length is < 4 or > 5)
{
    Console.Error.WriteLine("usage: PruneAndExport STATE_DICT MODEL BLOCKS OUT.onnx [SIZE]   e.g. convnext_atto.pth convnext_atto 4,9 pruned.onnx 224");
    return 2;
}
var (stateDict, name, blocks, onnxPath) = (args[0], args[1], args[2].Split(',').Select(int.Parse).ToList(), args[3]);

using var model = Checkpoint.Load(stateDict, name).Model;  // a timm/torchvision state dict, in eval mode
using var _ = no_grad();
var size = args.Length > 4 ? int.Parse(args[4]) : model.Config.ImgSize ?? 224;
var images = randn(8, model.Config.InChans, size, size, generator: new Generator(0));  // real, preprocessed images in practice
var merge = Merger.PruneAndMerge(model, blocks, calibration: [images]);  // λ = 1, batch-norm statistics, merge, verify
OnnxExporter.Export(model, onnxPath, [images]);  // written only if ONNX Runtime computes what TorchSharp does
using var onnx = OnnxRuntimeModel.Load(onnxPath, threads: 1);
var (torchLogits, onnxLogits) = (model.call(images), onnx.Run(images));
var sameTop1 = torchLogits.argmax(1).eq(onnxLogits.argmax(1)).sum().item<long>();
var maxDiff = (torchLogits - onnxLogits).abs().max().item<float>();
Console.WriteLine($"{name}: merged blocks {string.Join(",", merge.MergedBlocks)}, {merge.ParamsBefore:N0} → {merge.ParamsAfter:N0} params, merge check max |Δ| {merge.MaxAbsDiff:G3}");
Console.WriteLine($"{onnxPath}: ONNX Runtime vs TorchSharp: same top-1 on {sameTop1}/{images.shape[0]} inputs, max |Δ| {maxDiff:G3}");
return 0;
