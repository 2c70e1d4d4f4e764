using TorchSharp;
using TorchSharp.Modules;
using Updp.Checkpoints;
using static TorchSharp.torch;

namespace Updp.Models.ResNet;

// ResNet (He et al., 2016; torchvision's "v1.5", stride on the 3×3 conv of a bottleneck) with
// torchvision's module and parameter names, which timm's ResNet shares, so their state dicts load as
// they are. Read bottom-up: blocks, model, state-dict adapter, configurations, registered variants.

/// <summary>
/// torchvision's BasicBlock: conv1 (3×3, stride s) → bn1 → ReLU → conv2 (3×3) → bn2 → + shortcut →
/// ReLU. The shortcut is the identity, or <c>downsample</c> (1×1 conv stride s + BN) where the
/// stride or the width changes (the first block of layers 2–4).
/// </summary>
public sealed class BasicBlock : nn.Module<Tensor, Tensor>
{
    public const int Expansion = 1;

#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Conv2d conv2;
    private readonly BatchNorm2d bn2;
    private readonly Sequential? downsample;
#pragma warning restore IDE1006

    public BasicBlock(long inplanes, long planes, int stride) : base(nameof(BasicBlock))
    {
        Stride = stride;
        conv1 = nn.Conv2d(inplanes, planes, 3, stride: stride, padding: 1, bias: false);
        bn1 = nn.BatchNorm2d(planes);
        conv2 = nn.Conv2d(planes, planes, 3, padding: 1, bias: false);
        bn2 = nn.BatchNorm2d(planes);
        downsample = ResNet.Projection(inplanes, planes * Expansion, stride);
        // RegisterComponents skips the null downsample, so identity blocks have no downsample.* names.
        RegisterComponents();
    }

    public int Stride { get; }

    public Conv2d Conv1 => conv1;

    public BatchNorm2d Bn1 => bn1;

    public Conv2d Conv2 => conv2;

    public BatchNorm2d Bn2 => bn2;

    /// <summary>The projection shortcut (<c>downsample.0</c> conv, <c>downsample.1</c> BN), or null for the identity.</summary>
    public Sequential? Downsample => downsample;

    public override Tensor forward(Tensor x)
    {
        var h = nn.functional.relu(bn1.call(conv1.call(x)));
        var y = bn2.call(conv2.call(h));
        return nn.functional.relu(y.Plus(downsample?.call(x) ?? x));
    }
}

/// <summary>
/// torchvision's Bottleneck (expansion 4, stride on the 3×3 conv): conv1 (1×1) → bn1 → ReLU → conv2
/// (3×3, stride s) → bn2 → ReLU → conv3 (1×1, ×4 channels) → bn3 → + shortcut → ReLU.
/// </summary>
public sealed class Bottleneck : nn.Module<Tensor, Tensor>
{
    public const int Expansion = 4;

#pragma warning disable IDE1006
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Conv2d conv2;
    private readonly BatchNorm2d bn2;
    private readonly Conv2d conv3;
    private readonly BatchNorm2d bn3;
    private readonly Sequential? downsample;
#pragma warning restore IDE1006

    public Bottleneck(long inplanes, long planes, int stride) : base(nameof(Bottleneck))
    {
        Stride = stride;
        conv1 = nn.Conv2d(inplanes, planes, 1, bias: false);
        bn1 = nn.BatchNorm2d(planes);
        conv2 = nn.Conv2d(planes, planes, 3, stride: stride, padding: 1, bias: false);
        bn2 = nn.BatchNorm2d(planes);
        conv3 = nn.Conv2d(planes, planes * Expansion, 1, bias: false);
        bn3 = nn.BatchNorm2d(planes * Expansion);
        downsample = ResNet.Projection(inplanes, planes * Expansion, stride);
        RegisterComponents();
    }

    public int Stride { get; }

    public Conv2d Conv1 => conv1;

    public BatchNorm2d Bn1 => bn1;

    public Conv2d Conv2 => conv2;

    public BatchNorm2d Bn2 => bn2;

    public Conv2d Conv3 => conv3;

    public BatchNorm2d Bn3 => bn3;

    /// <summary>The projection shortcut, or null for the identity.</summary>
    public Sequential? Downsample => downsample;

    public override Tensor forward(Tensor x)
    {
        var h = nn.functional.relu(bn1.call(conv1.call(x)));
        h = nn.functional.relu(bn2.call(conv2.call(h)));
        var y = bn3.call(conv3.call(h));
        return nn.functional.relu(y.Plus(downsample?.call(x) ?? x));
    }
}

/// <summary>
/// The ResNet classifier: stem (conv1, bn1, ReLU, max-pool), layer1..layer4, global average pool, fc.
/// Every residual block is prunable, including the first block of a layer with its projection
/// shortcut; its path is <c>layerK.j</c> and its stage K−1.
/// </summary>
/// <remarks>
/// Small inputs (32×32, one channel): torchvision's stem (conv1 7×7 stride 2, then a 3×3 stride-2
/// max-pool) would leave 1×1 maps in layer4, so <see cref="ModelConfig.StemStride"/> selects a
/// CIFAR-style stem instead. Stem stride 1 or 2 makes conv1 a 3×3 conv of that stride (padding 1) with
/// no max-pool; <c>conv1.weight</c> is then [Width, in_chans, 3, 3] instead of [Width, in_chans, 7, 7],
/// so such checkpoints and ImageNet ones do not load into each other. Stem stride null or 4 is
/// torchvision's stem. The small-input setting (<see cref="ModelVariant.SmallInputStemStride"/>, used
/// for inputs ≤ 64 px) is stride 1: 32×32 maps in layer1, 4×4 in layer4, 0.55 GMACs for resnet18
/// (stride 2: ¼ of that). A state dict with a 3×3 conv1 loads as stride 1 (its stride is not in its weights).
/// </remarks>
public sealed class ResNet : ImageClassifier
{
    /// <summary>The architecture of a named variant.</summary>
    /// <param name="Bottleneck">Bottleneck blocks (expansion 4) instead of BasicBlocks.</param>
    /// <param name="Layers">Blocks per layer (torchvision's <c>layers</c>).</param>
    /// <param name="Width">Planes of layer1 (64 in torchvision); layer K has Width·2^(K−1). Smaller values make test-sized models.</param>
    public sealed record Architecture(bool Bottleneck, int[] Layers, int Width = 64);

    /// <summary>torchvision's stem: 7×7 stride-2 conv and 3×3 stride-2 max-pool.</summary>
    public const int DefaultStemStride = 4;

    /// <summary>The stem stride for 32×32 inputs: a 3×3 stride-1 conv1, no max-pool.</summary>
    public const int SmallInputStemStride = 1;

#pragma warning disable IDE1006
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> layer1;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> layer2;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> layer3;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> layer4;
    private readonly Linear fc;
#pragma warning restore IDE1006

    private readonly bool _maxPool;
    private readonly ModuleList<nn.Module<Tensor, Tensor>>[] _layers;
    // Replaced as a whole by ReplaceBlock, so that callers may replace blocks while enumerating Blocks.
    private IReadOnlyList<PrunableBlock> _blocks;

    public ResNet(ModelConfig config, Architecture arch) : base(nameof(ResNet), config)
    {
        ArgumentNullException.ThrowIfNull(arch);
        if (arch.Layers.Length != 4 || arch.Layers.Any(n => n < 1) || arch.Width < 1)
        {
            throw new ArgumentException($"a ResNet has 4 layers of at least one block and a positive width, got layers [{string.Join(", ", arch.Layers)}], width {arch.Width}", nameof(arch));
        }
        // Settings of other families are refused rather than ignored, so a recipe never silently differs.
        if (config.DropPathRate != 0 || config.LayerScaleInit is not null)
        {
            throw new ArgumentException(
                $"ResNet has no stochastic depth or layer scale (drop_path_rate {config.DropPathRate}, ls_init_value {config.LayerScaleInit?.ToString() ?? "null"}); leave them unset", nameof(config));
        }
        Arch = arch;
        var stemStride = config.StemStride ?? DefaultStemStride;
        (conv1, _maxPool) = stemStride switch
        {
            DefaultStemStride => (nn.Conv2d(config.InChans, arch.Width, 7, stride: 2, padding: 3, bias: false), true),
            1 or 2 => (nn.Conv2d(config.InChans, arch.Width, 3, stride: stemStride, padding: 1, bias: false), false),
            _ => throw new ArgumentException(
                $"ResNet's stem_stride must be 4 (torchvision's 7×7 stride-2 conv + max-pool), 1 or 2 (a 3×3 conv of that stride, no max-pool); got {stemStride}", nameof(config)),
        };
        bn1 = nn.BatchNorm2d(arch.Width);

        var expansion = arch.Bottleneck ? Bottleneck.Expansion : BasicBlock.Expansion;
        long inplanes = arch.Width;
        var layers = new ModuleList<nn.Module<Tensor, Tensor>>[4];
        for (var i = 0; i < 4; i++)
        {
            long planes = arch.Width << i;
            var stride = i == 0 ? 1 : 2;
            var blocks = new List<nn.Module<Tensor, Tensor>>();
            for (var j = 0; j < arch.Layers[i]; j++)
            {
                var s = j == 0 ? stride : 1;
                blocks.Add(arch.Bottleneck ? new Bottleneck(inplanes, planes, s) : new BasicBlock(inplanes, planes, s));
                inplanes = planes * expansion;
            }
            layers[i] = new ModuleList<nn.Module<Tensor, Tensor>>(blocks.ToArray());
        }
        (layer1, layer2, layer3, layer4) = (layers[0], layers[1], layers[2], layers[3]);
        _layers = layers;
        fc = nn.Linear(inplanes, config.NumClasses);
        RegisterComponents();
        InitWeights();

        var all = new List<PrunableBlock>();
        for (var i = 0; i < 4; i++)
        {
            for (var j = 0; j < _layers[i].Count; j++)
            {
                all.Add(new PrunableBlock(all.Count, i, $"layer{i + 1}.{j}", _layers[i][j]));
            }
        }
        _blocks = all.AsReadOnly();
    }

    public Architecture Arch { get; }

    /// <summary>Whether the stem ends with torchvision's 3×3 stride-2 max-pool (stem stride 4).</summary>
    public bool HasMaxPool => _maxPool;

    public override IReadOnlyList<PrunableBlock> Blocks => _blocks;

    public override nn.Module<Tensor, Tensor> ReplaceBlock(int index, nn.Module<Tensor, Tensor> module)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _blocks.Count);
        var block = _blocks[index];
        var first = _blocks.First(b => b.Stage == block.Stage).Index;
        module.train(training);
        var old = ModuleLists.Replace(_layers[block.Stage], index - first, module);
        var blocks = _blocks.ToArray();
        blocks[index] = block with { Module = module };
        _blocks = Array.AsReadOnly(blocks);
        return old;
    }

    public override Tensor ForwardFeatures(Tensor x)
    {
        x = nn.functional.relu(bn1.call(conv1.call(x)));
        if (_maxPool)
        {
            x = nn.functional.max_pool2d(x, 3, 2, 1);
        }
        foreach (var layer in _layers)
        {
            foreach (var block in layer)
            {
                x = block.call(x);
            }
        }
        return x.mean([2, 3]);
    }

    public override Tensor forward(Tensor x) => fc.call(ForwardFeatures(x));

    /// <summary>The projection shortcut of a block whose stride or width changes (1×1 conv + BN), else null.</summary>
    internal static Sequential? Projection(long inplanes, long outplanes, int stride) =>
        stride != 1 || inplanes != outplanes
            ? nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride: stride, bias: false), nn.BatchNorm2d(outplanes))
            : null;

    // torchvision's initialisation: Kaiming normal (fan_out, ReLU gain) for convs, unit BN scales,
    // zero BN shifts; fc keeps nn.Linear's default.
    private void InitWeights()
    {
        using var _ = no_grad();
        foreach (var (_, m) in named_modules())
        {
            switch (m)
            {
                case Conv2d conv:
                    var w = conv.weight;
                    var fanOut = w.shape[0] * w.shape[2] * w.shape[3];
                    nn.init.normal_(w, 0, Math.Sqrt(2.0 / fanOut));
                    break;
                case BatchNorm2d bn:
                    nn.init.ones_(bn.weight);
                    nn.init.zeros_(bn.bias!);
                    break;
            }
        }
    }

    /// <summary>
    /// The configuration of a torchvision/timm ResNet state dict: input channels from
    /// <c>conv1.weight</c> [W, in_chans, k, k], stem from its kernel (7 → torchvision's stem, stride 4;
    /// 3 → the small-input stem, read as stride 1: a 3×3 conv's stride is not in its weights),
    /// classes from <c>fc.weight</c> [num_classes, C].
    /// </summary>
    internal static ModelConfig InferConfig(string modelName, IReadOnlyDictionary<string, Tensor> stateDict, string sourceName)
    {
        var stem = StateDictAdapters.Require(stateDict, "conv1.weight", 4, sourceName);
        var fcWeight = StateDictAdapters.Require(stateDict, "fc.weight", 2, sourceName);
        int? stemStride = (stem.shape[2], stem.shape[3]) switch
        {
            (7, 7) => DefaultStemStride,
            (3, 3) => SmallInputStemStride,
            _ => throw new CheckpointException(
                $"'{sourceName}': conv1.weight has shape [{string.Join(", ", stem.shape)}]; expected a 7×7 (ImageNet) or 3×3 (small-input) stem kernel", sourceName),
        };
        return new ModelConfig
        {
            Name = modelName,
            InChans = checked((int)stem.shape[1]),
            NumClasses = checked((int)fcWeight.shape[0]),
            StemStride = stemStride,
        };
    }

    /// <summary>torchvision's ResNet configurations.</summary>
    public static IEnumerable<ModelVariant> Variants()
    {
        static ModelVariant V(string name, bool bottleneck, int[] layers)
        {
            var arch = new Architecture(bottleneck, layers);
            return new ModelVariant(name, "resnet",
                $"ResNet-{name[6..]}: {(bottleneck ? "Bottleneck" : "BasicBlock")}, layers {string.Join('-', layers)}, out {(bottleneck ? "256-2048" : "64-512")}",
                SmallInputStemStride, c => new ResNet(c, arch));
        }
        yield return V("resnet18", false, [2, 2, 2, 2]);
        yield return V("resnet34", false, [3, 4, 6, 3]);
        yield return V("resnet50", true, [3, 4, 6, 3]);
    }
}
