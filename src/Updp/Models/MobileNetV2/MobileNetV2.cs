using TorchSharp;
using TorchSharp.Modules;
using Updp.Checkpoints;
using static TorchSharp.torch;

namespace Updp.Models.MobileNetV2;

// MobileNetV2 (Sandler et al., 2018) with torchvision's module and parameter names (features.k…,
// classifier.1), so torchvision state dicts load as they are; timm's names load through the
// state-dict adapter (MobileNetV2.TimmKey). Read bottom-up: conv-BN-ReLU6, inverted residual,
// model, state-dict adapter, configurations, registered variants.

/// <summary>
/// torchvision's <c>Conv2dNormActivation</c>: <c>0</c> conv (no bias) → <c>1</c> BatchNorm2d →
/// ReLU6 (optional). The children are registered under their list indices, as nn.Sequential does.
/// </summary>
public sealed class ConvBnAct : nn.Module<Tensor, Tensor>
{
    private readonly bool _activation;

    public ConvBnAct(long inChannels, long outChannels, int kernelSize, int stride = 1, long groups = 1, bool activation = true)
        : base(nameof(ConvBnAct))
    {
        _activation = activation;
        Stride = stride;
        IsDepthwise = groups > 1 && groups == inChannels && groups == outChannels;
        Conv = nn.Conv2d(inChannels, outChannels, kernelSize, stride: stride, padding: kernelSize / 2, groups: groups, bias: false);
        Bn = nn.BatchNorm2d(outChannels);
        register_module("0", Conv);
        register_module("1", Bn);
    }

    public Conv2d Conv { get; }

    public BatchNorm2d Bn { get; }

    public int Stride { get; }

    /// <summary>Whether a ReLU6 follows the batch norm.</summary>
    public bool HasActivation => _activation;

    /// <summary>Registers nothing: the children are registered by index in the constructor, and the
    /// typed properties' backing fields must not be registered a second time under their own names.</summary>
    protected override void RegisterComponents()
    {
    }

    /// <summary>Whether the conv is depthwise (one group per channel, in and out).</summary>
    public bool IsDepthwise { get; }

    public override Tensor forward(Tensor x)
    {
        var y = Bn.call(Convolve(x));
        return _activation ? nn.functional.relu6(y) : y;
    }

    /// <summary>
    /// The conv alone. A depthwise conv that needs a gradient goes through
    /// <see cref="DepthwiseConvolution"/> (libtorch's depthwise weight gradient costs 12–26 ms per
    /// call on MobileNetV2's 2×2 and 1×1 maps at batch 64); otherwise, and always without a gradient
    /// (where <see cref="ModelProfiler"/> hooks the Conv2d), the Conv2d module is called.
    /// </summary>
    public Tensor Convolve(Tensor x) =>
        IsDepthwise && is_grad_enabled()
            ? DepthwiseConvolution.Conv2d(x, Conv.weight, Conv.bias, Stride, [Conv.weight.shape[2] / 2, Conv.weight.shape[3] / 2])
            : Conv.call(x);
}

/// <summary>
/// torchvision's <c>InvertedResidual</c>: <c>conv.0</c> pw 1×1 C→tC + BN + ReLU6 (absent when t=1)
/// → dw 3×3 stride s + BN + ReLU6 → pwl 1×1 tC→C' → BN [+x when s=1 and C=C'].
/// For t=1 the indices shift: <c>conv.0</c> dw, <c>conv.1</c> pwl, <c>conv.2</c> BN.
/// </summary>
public sealed class InvertedResidual : nn.Module<Tensor, Tensor>
{
    public InvertedResidual(long inChannels, long outChannels, int stride, int expandRatio, double dropPath) : base(nameof(InvertedResidual))
    {
        if (stride is not (1 or 2))
        {
            throw new ArgumentException($"an inverted residual has stride 1 or 2, got {stride}", nameof(stride));
        }
        InChannels = inChannels;
        OutChannels = outChannels;
        Stride = stride;
        Hidden = inChannels * expandRatio;
        var layers = new List<nn.Module<Tensor, Tensor>>();
        if (expandRatio != 1)
        {
            Expand = new ConvBnAct(inChannels, Hidden, 1);
            layers.Add(Expand);
        }
        Depthwise = new ConvBnAct(Hidden, Hidden, 3, stride, groups: Hidden);
        Project = nn.Conv2d(Hidden, outChannels, 1, bias: false);
        ProjectBn = nn.BatchNorm2d(outChannels);
        layers.AddRange([Depthwise, Project, ProjectBn]);
        Conv = nn.Sequential(layers.ToArray());
        DropPath = new DropPath(dropPath);
        register_module("conv", Conv);
        register_module("drop_path", DropPath);
    }

    public long InChannels { get; }

    public long OutChannels { get; }

    public long Hidden { get; }

    public int Stride { get; }

    /// <summary>True when the block adds its input (s=1 and C=C').</summary>
    public bool UseResidual => Stride == 1 && InChannels == OutChannels;

    /// <summary>The pointwise expansion (conv + BN + ReLU6), null for the t=1 block.</summary>
    public ConvBnAct? Expand { get; }

    /// <summary>The depthwise 3×3 (conv + BN + ReLU6), padding 1, stride s.</summary>
    public ConvBnAct Depthwise { get; }

    /// <summary>The linear pointwise projection tC→C' (no bias), followed by <see cref="ProjectBn"/>.</summary>
    public Conv2d Project { get; }

    public BatchNorm2d ProjectBn { get; }

    /// <summary>The <c>conv</c> sequence whose parameter names are torchvision's.</summary>
    internal Sequential Conv { get; }

    internal DropPath DropPath { get; }

    /// <summary>Registers nothing: <c>conv</c> and <c>drop_path</c> are registered in the constructor,
    /// and the typed properties' backing fields must not be registered a second time.</summary>
    protected override void RegisterComponents()
    {
    }

    public override Tensor forward(Tensor input)
    {
        var y = Conv.call(input);
        return UseResidual ? DropPath.call(y).Plus(input) : y;
    }
}

/// <summary>
/// The MobileNetV2 classifier: <c>features.0</c> stem (3×3 conv + BN + ReLU6), <c>features.1–17</c>
/// the 17 inverted residuals (the prunable blocks, index = k−1), <c>features.18</c> 1×1 head conv +
/// BN + ReLU6, global average pool, <c>classifier</c> (dropout 0.2, Linear).
/// <para>
/// Every block is prunable, residual or not: its pruned form merges exactly into one dense 3×3 conv
/// (stride s, with bias) whatever its stride and widths. Block 0 (t=1) merges into a dense 3×3
/// 32→16 conv with ~5.8× the MACs of its dw 3×3 + 1×1 pair, so pruning it costs MACs; the other
/// blocks get cheaper or (block 16) about as cheap. Blocks that change the shape of their input
/// (strided or C≠C': 0, 1, 3, 6, 10, 13, 16) cannot be dropped.
/// </para>
/// <para>
/// <see cref="ModelConfig.StemStride"/> is the 3×3 stem conv's stride (default 2). Small inputs
/// (32×32, one channel): the stem has stride 1 (the kernel stays 3×3) and every block keeps its stride, so the maps are 32, 16, 8, 4 and 2 pixels
/// wide (what ImageNet's 224² gives from 112 down to 7 is here 32 down to 2), and the model costs
/// what the standard one costs at 64² (about 1/12 of its 224² MACs).
/// </para>
/// </summary>
public sealed class MobileNetV2 : ImageClassifier
{
    /// <summary>
    /// One row of the paper's Table 2: expansion t, output channels c (before the width multiplier),
    /// repeats n, stride s of the first repeat.
    /// </summary>
    public sealed record Stage(int T, int C, int N, int S);

    /// <summary>The inverted-residual settings (torchvision's and timm's).</summary>
    public static readonly IReadOnlyList<Stage> Stages =
    [
        new(1, 16, 1, 1), new(6, 24, 2, 2), new(6, 32, 3, 2), new(6, 64, 4, 2), new(6, 96, 3, 1), new(6, 160, 3, 2), new(6, 320, 1, 1),
    ];

    public const int DefaultStemStride = 2;

    public const double ClassifierDropout = 0.2;

#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly ModuleList<nn.Module<Tensor, Tensor>> features;
    private readonly Sequential classifier;
#pragma warning restore IDE1006

    // Replaced as a whole by ReplaceBlock, so that callers may replace blocks while enumerating Blocks.
    private IReadOnlyList<PrunableBlock> _blocks;

    public MobileNetV2(ModelConfig config, double widthMultiplier) : base(nameof(MobileNetV2), config)
    {
        WidthMultiplier = widthMultiplier;
        var stemStride = config.StemStride ?? DefaultStemStride;
        if (stemStride < 1)
        {
            throw new ArgumentException($"stem_stride must be ≥ 1, got {stemStride}", nameof(config));
        }
        if (config.LayerScaleInit is not null)
        {
            throw new ArgumentException($"MobileNetV2 has no layer scale (ls_init_value {config.LayerScaleInit}); leave it unset", nameof(config));
        }
        var inputChannels = MakeDivisible(32 * widthMultiplier);
        var lastChannels = MakeDivisible(1280 * Math.Max(1.0, widthMultiplier));
        var total = Stages.Sum(s => s.N);
        var layers = new List<nn.Module<Tensor, Tensor>> { new ConvBnAct(config.InChans, inputChannels, 3, stemStride) };
        var blocks = new List<PrunableBlock>();
        for (var i = 0; i < Stages.Count; i++)
        {
            var (t, c, n, s) = Stages[i];
            var outputChannels = MakeDivisible(c * widthMultiplier);
            for (var j = 0; j < n; j++)
            {
                // timm's linear stochastic-depth rule over the blocks (torchvision has none).
                var block = new InvertedResidual(inputChannels, outputChannels, j == 0 ? s : 1, t, config.DropPathRate * blocks.Count / total);
                blocks.Add(new PrunableBlock(blocks.Count, i, $"features.{layers.Count}", block));
                layers.Add(block);
                inputChannels = outputChannels;
            }
        }
        layers.Add(new ConvBnAct(inputChannels, lastChannels, 1));
        features = new ModuleList<nn.Module<Tensor, Tensor>>(layers.ToArray());
        classifier = nn.Sequential(nn.Dropout(ClassifierDropout), nn.Linear(lastChannels, config.NumClasses));
        RegisterComponents();
        InitWeights();
        _blocks = blocks.AsReadOnly();
    }

    public double WidthMultiplier { get; }

    public override IReadOnlyList<PrunableBlock> Blocks => _blocks;

    public override nn.Module<Tensor, Tensor> ReplaceBlock(int index, nn.Module<Tensor, Tensor> module)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _blocks.Count);
        module.train(training);
        // features.0 is the stem, so block i is features.(i+1).
        var old = ModuleLists.Replace(features, index + 1, module);
        var blocks = _blocks.ToArray();
        blocks[index] = blocks[index] with { Module = module };
        _blocks = Array.AsReadOnly(blocks);
        return old;
    }

    public override Tensor ForwardFeatures(Tensor x)
    {
        foreach (var layer in features)
        {
            x = layer.call(x);
        }
        return x.mean([2, 3]);
    }

    public override Tensor forward(Tensor x) => classifier.call(ForwardFeatures(x));

    /// <summary>
    /// Rounds a channel count to a multiple of 8, never more than 10% below it (torchvision's
    /// <c>_make_divisible</c>, timm's <c>make_divisible</c>).
    /// </summary>
    public static long MakeDivisible(double value, int divisor = 8)
    {
        var rounded = Math.Max(divisor, (long)(value + (divisor / 2.0)) / divisor * divisor);
        return rounded < 0.9 * value ? rounded + divisor : rounded;
    }

    /// <summary>
    /// Maps one of timm's <c>mobilenetv2_*</c> parameter names onto torchvision's (unknown names
    /// pass unchanged): <c>conv_stem</c>/<c>bn1</c> → <c>features.0.0/1</c>; <c>blocks.i.j</c> →
    /// <c>features.k</c> with k = 1 + (blocks before stage i) + j, where the t=1 block's
    /// <c>conv_dw, bn1, conv_pw, bn2</c> become <c>conv.0.0, conv.0.1, conv.1, conv.2</c> and an
    /// inverted residual's <c>conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3</c> become
    /// <c>conv.0.0, conv.0.1, conv.1.0, conv.1.1, conv.2, conv.3</c>; <c>conv_head</c>/<c>bn2</c>
    /// → <c>features.18.0/1</c>; <c>classifier</c> → <c>classifier.1</c>.
    /// </summary>
    public static string TimmKey(string key)
    {
        var parts = key.Split('.');
        var head = Stages.Sum(s => s.N) + 1;
        string Rest(int from) => string.Join('.', parts[from..]);
        switch (parts[0])
        {
            case "conv_stem":
                return $"features.0.0.{Rest(1)}";
            case "bn1":
                return $"features.0.1.{Rest(1)}";
            case "conv_head":
                return $"features.{head}.0.{Rest(1)}";
            case "bn2":
                return $"features.{head}.1.{Rest(1)}";
            case "classifier" when parts.Length == 2: // torchvision's classifier.1.weight passes unchanged
                return $"classifier.1.{Rest(1)}";
            case "blocks" when parts.Length > 4 && int.TryParse(parts[1], out var i) && int.TryParse(parts[2], out var j)
                && i >= 0 && i < Stages.Count && j >= 0 && j < Stages[i].N:
                var k = 1 + Stages.Take(i).Sum(s => s.N) + j;
                var layer = (Stages[i].T == 1, parts[3]) switch
                {
                    (true, "conv_dw") => "conv.0.0",
                    (true, "bn1") => "conv.0.1",
                    (true, "conv_pw") => "conv.1",
                    (true, "bn2") => "conv.2",
                    (false, "conv_pw") => "conv.0.0",
                    (false, "bn1") => "conv.0.1",
                    (false, "conv_dw") => "conv.1.0",
                    (false, "bn2") => "conv.1.1",
                    (false, "conv_pwl") => "conv.2",
                    (false, "bn3") => "conv.3",
                    _ => null,
                };
                return layer is null ? key : $"features.{k}.{layer}.{Rest(4)}";
            default:
                return key;
        }
    }

    /// <summary>
    /// The configuration of a torchvision MobileNetV2 state dict (timm's names are mapped first by
    /// <see cref="TimmKey"/>): input channels from <c>features.0.0.weight</c> [C0, in_chans, 3, 3],
    /// classes from <c>classifier.1.weight</c> [num_classes, C]. The stem stride is not in the tensors
    /// (the stem kernel is 3×3 at any stride), so it is the family default, 2, as in torchvision and timm.
    /// </summary>
    internal static ModelConfig InferConfig(string modelName, IReadOnlyDictionary<string, Tensor> stateDict, string sourceName)
    {
        var stem = StateDictAdapters.Require(stateDict, "features.0.0.weight", 4, sourceName);
        var fc = StateDictAdapters.Require(stateDict, "classifier.1.weight", 2, sourceName);
        return new ModelConfig
        {
            Name = modelName,
            InChans = checked((int)stem.shape[1]),
            NumClasses = checked((int)fc.shape[0]),
        };
    }

    /// <summary>
    /// The width multipliers registered: 0.5 (small, for fixtures and quick runs), 1.0 and 1.4, as
    /// timm's <c>mobilenetv2_050/100/140</c> and torchvision's <c>mobilenet_v2(width_mult=…)</c>.
    /// The small-input setting (32×32) is stem stride 1 with every block's stride kept (see the class).
    /// </summary>
    public static IEnumerable<ModelVariant> Variants()
    {
        static ModelVariant V(string name, double width) =>
            new(name, "mobilenetv2", $"MobileNetV2 width {width:0.0#}: 17 inverted residuals, dense 3×3 merges",
                SmallInputStemStride: 1, c => new MobileNetV2(c, width));
        yield return V("mobilenetv2_050", 0.5);
        yield return V("mobilenetv2_100", 1.0);
        yield return V("mobilenetv2_140", 1.4);
    }

    // torchvision's initialisation: convs Kaiming normal (fan out), BN weight 1 and bias 0,
    // Linear normal(0, 0.01) with zero bias.
    private void InitWeights()
    {
        using var _ = no_grad();
        foreach (var (_, m) in named_modules())
        {
            switch (m)
            {
                case Conv2d conv:
                    nn.init.kaiming_normal_(conv.weight, mode: nn.init.FanInOut.FanOut);
                    if (conv.bias is not null)
                    {
                        nn.init.zeros_(conv.bias);
                    }
                    break;
                case BatchNorm2d bn:
                    nn.init.ones_(bn.weight);
                    nn.init.zeros_(bn.bias!);
                    break;
                case Linear linear:
                    nn.init.normal_(linear.weight, 0, 0.01);
                    nn.init.zeros_(linear.bias!);
                    break;
            }
        }
    }
}
