using Updp.Checkpoints;
using Updp.Export;
using Updp.Models;
using Updp.Models.ResNet;
using static TorchSharp.torch;

// Feeds the same images to ML.NET's ResNet-18 featurizer in ONNX Runtime (its own preprocessing
// model in front: RGB 0..255 → BGR minus the mean image) and to our ResNet holding the converted
// weights (ImageNet mean/std normalisation, folded into conv1 by the converter), and compares the
// pooled 512 features. Our fc is set to the identity so that the logits are those features.
if (args.Length != 3)
{
    Console.Error.WriteLine("usage: MlnetResNetCheck PACKAGE_DIR CONVERTED.safetensors LAYER4_BLOCKS   (3 for --drop-block none, 2 otherwise)");
    return 2;
}
var (package, converted, layer4) = (args[0], args[1], int.Parse(args[2]));
var models = Path.Combine(package, "tools", "DnnImageModels");
using var prep = OnnxRuntimeModel.Load(Path.Combine(models, "ResNetPrepOnnx", "ResNetPreprocess.onnx"), threads: 2);
using var featurizer = OnnxRuntimeModel.Load(Path.Combine(models, "ResNet18Onnx", "ResNet18.onnx"), threads: 2);

var config = new ModelConfig { Name = "resnet18", InChans = 3, NumClasses = 512 };
using var model = new ResNet(config, new ResNet.Architecture(false, [2, 2, 2, layer4]));
var weights = StateDict.Read(converted);
weights["fc.weight"] = eye(512);
weights["fc.bias"] = zeros(512);
StateDict.LoadInto(model, weights, converted);
model.eval();

using var _ = no_grad();
var mean = tensor(new float[] { 0.485f, 0.456f, 0.406f }).view(1, 3, 1, 1);
var std = tensor(new float[] { 0.229f, 0.224f, 0.225f }).view(1, 3, 1, 1);
var generator = new Generator(0);
var cosines = new List<double>();
var relErrors = new List<double>();
for (var i = 0; i < 8; i++)
{
    // Smooth random pictures: a coarse random field upsampled, so the stem sees edges and areas.
    var coarse = rand(1, 3, 7 << (i % 3), 7 << (i % 3), generator: generator);
    var pixels = nn.functional.interpolate(coarse, [224, 224], mode: InterpolationMode.Bilinear, align_corners: false).mul(255).round();
    var theirs = featurizer.Run(prep.Run(pixels)).flatten();
    var ours = model.call(pixels.div(255).sub(mean).div(std)).flatten();
    cosines.Add(nn.functional.cosine_similarity(theirs.unsqueeze(0), ours.unsqueeze(0)).item<float>());
    relErrors.Add((theirs - ours).norm().item<float>() / theirs.norm().item<float>());
}
Console.WriteLine($"{converted} (layer4 with {layer4} blocks) vs ML.NET's featurizer in ONNX Runtime, 8 images: " +
    $"cosine of the pooled features min {cosines.Min():F4} median {cosines.Order().ElementAt(4):F4}, relative L2 error max {relErrors.Max():F4}");
return 0;
