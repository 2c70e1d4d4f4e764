using TorchSharp;
using TorchSharp.Modules;
using Updp.Checkpoints;
using static TorchSharp.torch;

namespace Updp.Models.ConvNeXt;

// ConvNeXt V1 (Liu et al., 2022) with timm's module and parameter names, so timm state dicts load
// as they are. Read bottom-up: block, stage, model, state-dict adapter, configurations, registered variants.

/// <summary>
/// x → conv_dw (7×7 depthwise) → norm (LayerNorm over C) → mlp.fc1 (C→4C) → GELU → mlp.fc2 (4C→C)
/// → ×gamma → +x. timm's atto..nano (<c>convMlp</c>) store fc1/fc2 as 1×1 convs and the norm as
/// LayerNorm2d; tiny and larger use Linear layers and a channels-last LayerNorm. Both compute the
/// same function, so both run the channels-last path: a 1×1 conv on NCHW is a Linear on NHWC, and
/// libtorch's CPU matmul is 2–3× faster than its 1×1 convolution here.
/// </summary>
public sealed class ConvNeXtBlock : nn.Module<Tensor, Tensor>
{
    private readonly long[] _normShape;
    private readonly double _normEps;

#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly DepthwiseConv2d conv_dw;
    private readonly nn.Module<Tensor, Tensor> norm;
    private readonly ConvNeXtMlp mlp;
    private readonly Parameter gamma;
    private readonly DropPath drop_path;
#pragma warning restore IDE1006

    public ConvNeXtBlock(long dim, bool convMlp, double dropPath, double layerScaleInit = 1e-6) : base(nameof(ConvNeXtBlock))
    {
        _normShape = [dim];
        _normEps = 1e-6;
        ConvMlp = convMlp;
        conv_dw = new DepthwiseConv2d(dim, 7);
        norm = convMlp ? new LayerNorm2d(dim, _normEps) : nn.LayerNorm(dim, eps: _normEps);
        mlp = new ConvNeXtMlp(dim, 4 * dim, convMlp);
        gamma = new Parameter(full(dim, layerScaleInit).DetachFromDisposeScope());
        drop_path = new DropPath(dropPath);
        RegisterComponents();
    }

    public long Dim => _normShape[0];

    public bool ConvMlp { get; }

    public DepthwiseConv2d ConvDw => conv_dw;

    public ConvNeXtMlp Mlp => mlp;

    public Parameter Gamma => gamma;

    /// <summary>The LayerNorm's affine parameters, whichever module kind holds them.</summary>
    public (Tensor Weight, Tensor Bias) NormParameters => NormAffine(norm);

    internal double NormEps => _normEps;

    internal nn.Module<Tensor, Tensor> Norm => norm;

    internal DropPath DropPath => drop_path;

    internal static (Tensor Weight, Tensor Bias) NormAffine(nn.Module<Tensor, Tensor> norm) => norm switch
    {
        LayerNorm2d ln2d => (ln2d.Weight, ln2d.Bias),
        LayerNorm ln => (ln.weight!, ln.bias!),
        _ => throw new InvalidOperationException($"unexpected norm {norm.GetType().Name}"),
    };

    public override Tensor forward(Tensor input)
    {
        var x = conv_dw.call(input).permute(0, 2, 3, 1);
        var (w, b) = NormParameters;
        x = nn.functional.layer_norm(x, _normShape, w, b, _normEps);
        x = (mlp.call(x) * gamma).permute(0, 3, 1, 2);
        return drop_path.call(x).Plus(input);
    }
}

/// <summary>
/// fc1 → GELU → fc2 on channels-last input. The weights keep their checkpoint shapes ([out,in,1,1]
/// for timm's conv_mlp models, [out,in] otherwise) and are viewed as matrices.
/// </summary>
public sealed class ConvNeXtMlp : nn.Module<Tensor, Tensor>, IMacCounter
{
#pragma warning disable IDE1006
    private readonly nn.Module<Tensor, Tensor> fc1;
    private readonly nn.Module<Tensor, Tensor> fc2;
#pragma warning restore IDE1006

    public ConvNeXtMlp(long dim, long hidden, bool conv) : base(nameof(ConvNeXtMlp))
    {
        fc1 = conv ? nn.Conv2d(dim, hidden, 1) : nn.Linear(dim, hidden);
        fc2 = conv ? nn.Conv2d(hidden, dim, 1) : nn.Linear(hidden, dim);
        RegisterComponents();
    }

    /// <summary>fc1's weight as a [hidden, dim] matrix and its bias.</summary>
    public (Tensor Weight, Tensor Bias) Fc1 => AsMatrix(fc1);

    /// <summary>fc2's weight as a [dim, hidden] matrix and its bias.</summary>
    public (Tensor Weight, Tensor Bias) Fc2 => AsMatrix(fc2);

    public override Tensor forward(Tensor x)
    {
        var (w1, b1) = Fc1;
        var (w2, b2) = Fc2;
        return nn.functional.linear(nn.functional.gelu(nn.functional.linear(x, w1, b1)), w2, b2);
    }

    public long CountMacs(Tensor input, Tensor output)
    {
        var (w1, _) = Fc1;
        var positions = input.numel() / input.shape[^1];
        return 2 * positions * w1.shape[0] * w1.shape[1];
    }

    private static (Tensor Weight, Tensor Bias) AsMatrix(nn.Module<Tensor, Tensor> layer) => layer switch
    {
        Conv2d c => (c.weight.flatten(1), c.bias!),
        Linear l => (l.weight, l.bias!),
        _ => throw new InvalidOperationException($"unexpected layer {layer.GetType().Name}"),
    };
}

/// <summary>Optional downsampling (LayerNorm2d + 2×2 stride-2 conv) followed by the blocks.</summary>
public sealed class ConvNeXtStage : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly nn.Module<Tensor, Tensor> downsample;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> blocks;
#pragma warning restore IDE1006

    public ConvNeXtStage(long inDim, long outDim, int depth, bool downsampleInput, bool convMlp, IReadOnlyList<double> dropPaths, double layerScaleInit)
        : base(nameof(ConvNeXtStage))
    {
        downsample = downsampleInput
            ? nn.Sequential(new LayerNorm2d(inDim), new PatchConv2d(inDim, outDim, 2))
            : nn.Identity();
        blocks = new ModuleList<nn.Module<Tensor, Tensor>>(
            Enumerable.Range(0, depth).Select(j => (nn.Module<Tensor, Tensor>)new ConvNeXtBlock(outDim, convMlp, dropPaths[j], layerScaleInit)).ToArray());
        RegisterComponents();
    }

    /// <summary>The residual blocks. Swap entries with <see cref="ReplaceBlock"/>: the indexer does not re-register them.</summary>
    public ModuleList<nn.Module<Tensor, Tensor>> Blocks => blocks;

    /// <summary>Replaces block <paramref name="index"/> of this stage (see <see cref="ImageClassifier.ReplaceBlock"/>).</summary>
    public nn.Module<Tensor, Tensor> ReplaceBlock(int index, nn.Module<Tensor, Tensor> module) => ModuleLists.Replace(blocks, index, module);

    public override Tensor forward(Tensor x)
    {
        x = downsample.call(x);
        foreach (var block in blocks)
        {
            x = block.call(x);
        }
        return x;
    }
}

/// <summary>Global average pool → LayerNorm2d → Linear (timm's NormMlpClassifierHead without hidden layer).</summary>
public sealed class ConvNeXtHead : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly LayerNorm2d norm;
    private readonly Linear fc;
#pragma warning restore IDE1006

    public ConvNeXtHead(long dim, long numClasses) : base(nameof(ConvNeXtHead))
    {
        norm = new LayerNorm2d(dim);
        fc = nn.Linear(dim, numClasses);
        RegisterComponents();
    }

    public Tensor PreLogits(Tensor x) => norm.call(x.mean([2, 3], keepdim: true)).flatten(1);

    public override Tensor forward(Tensor x) => fc.call(PreLogits(x));
}

/// <summary>
/// The ConvNeXt V1 classifier: stem, four stages, head. <see cref="ModelConfig.StemStride"/> is the
/// patchify stem's stride and kernel (default 4).
/// </summary>
public sealed class ConvNeXt : ImageClassifier
{
    /// <summary>The architecture of a named variant (timm's configurations).</summary>
    public sealed record Architecture(int[] Depths, int[] Dims, bool ConvMlp);

    public const int DefaultStemStride = 4;

    public const double DefaultLayerScaleInit = 1e-6;

#pragma warning disable IDE1006
    private readonly Sequential stem;
    private readonly ModuleList<ConvNeXtStage> stages;
    private readonly ConvNeXtHead head;
#pragma warning restore IDE1006

    // Replaced as a whole by ReplaceBlock, so that callers may replace blocks while enumerating Blocks.
    private IReadOnlyList<PrunableBlock> _blocks;

    public ConvNeXt(ModelConfig config, Architecture arch) : base(nameof(ConvNeXt), config)
    {
        Arch = arch;
        var stemStride = config.StemStride ?? DefaultStemStride;
        if (stemStride < 1)
        {
            throw new ArgumentException($"stem_stride must be ≥ 1, got {stemStride}", nameof(config));
        }
        stem = nn.Sequential(
            new PatchConv2d(config.InChans, arch.Dims[0], stemStride),
            new LayerNorm2d(arch.Dims[0]));

        var total = arch.Depths.Sum();
        var rates = Enumerable.Range(0, total).Select(i => total > 1 ? config.DropPathRate * i / (total - 1) : 0).ToArray();
        stages = new ModuleList<ConvNeXtStage>();
        var offset = 0;
        for (var i = 0; i < arch.Depths.Length; i++)
        {
            var inDim = i == 0 ? arch.Dims[0] : arch.Dims[i - 1];
            stages.Add(new ConvNeXtStage(inDim, arch.Dims[i], arch.Depths[i], i > 0, arch.ConvMlp, rates[offset..(offset + arch.Depths[i])],
                config.LayerScaleInit ?? DefaultLayerScaleInit));
            offset += arch.Depths[i];
        }
        head = new ConvNeXtHead(arch.Dims[^1], config.NumClasses);
        RegisterComponents();

        Init.TruncNormalWeights(this);
        var blocks = new List<PrunableBlock>();
        for (var i = 0; i < stages.Count; i++)
        {
            var stageBlocks = stages[i].Blocks;
            for (var j = 0; j < stageBlocks.Count; j++)
            {
                blocks.Add(new PrunableBlock(blocks.Count, i, $"stages.{i}.blocks.{j}", stageBlocks[j]));
            }
        }
        _blocks = blocks.AsReadOnly();
    }

    public Architecture Arch { get; }

    public override IReadOnlyList<PrunableBlock> Blocks => _blocks;

    public override nn.Module<Tensor, Tensor> ReplaceBlock(int index, nn.Module<Tensor, Tensor> module)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _blocks.Count);
        var block = _blocks[index];
        var first = _blocks.First(b => b.Stage == block.Stage).Index;
        module.train(training);
        var old = stages[block.Stage].ReplaceBlock(index - first, module);
        var blocks = _blocks.ToArray();
        blocks[index] = block with { Module = module };
        _blocks = Array.AsReadOnly(blocks);
        return old;
    }

    public override Tensor ForwardFeatures(Tensor x)
    {
        x = stem.call(x);
        foreach (var stage in stages)
        {
            x = stage.call(x);
        }
        return head.PreLogits(x);
    }

    public override Tensor forward(Tensor x)
    {
        x = stem.call(x);
        foreach (var stage in stages)
        {
            x = stage.call(x);
        }
        return head.call(x);
    }

    /// <summary>
    /// The configuration of a timm ConvNeXt state dict: input channels from <c>stem.0.weight</c>
    /// [C0, in_chans, k, k], stem stride from its kernel size k (the patchify stem's kernel equals its
    /// stride), classes from <c>head.fc.weight</c> [num_classes, C].
    /// </summary>
    internal static ModelConfig InferConfig(string modelName, IReadOnlyDictionary<string, Tensor> stateDict, string sourceName)
    {
        var stem = StateDictAdapters.Require(stateDict, "stem.0.weight", 4, sourceName);
        var fc = StateDictAdapters.Require(stateDict, "head.fc.weight", 2, sourceName);
        if (stem.shape[2] != stem.shape[3])
        {
            throw new CheckpointException(
                $"'{sourceName}': stem.0.weight has a non-square kernel [{string.Join(", ", stem.shape)}]; ConvNeXt's patchify stem is square", sourceName);
        }
        return new ModelConfig
        {
            Name = modelName,
            InChans = checked((int)stem.shape[1]),
            NumClasses = checked((int)fc.shape[0]),
            StemStride = checked((int)stem.shape[2]),
        };
    }

    /// <summary>
    /// timm's ConvNeXt V1 configurations. For 32×32 inputs ConvNeXt keeps its 4×4 patchify stem
    /// (8×8 maps in stage 0, 1×1 in stage 3): measured on Fashion-MNIST, stride 2 cost 2.3–3× the
    /// training time for under one point of accuracy after 3 epochs (docs/BENCHMARKS.md).
    /// </summary>
    public static IEnumerable<ModelVariant> Variants()
    {
        static ModelVariant V(string name, int[] depths, int[] dims, bool convMlp, string what)
        {
            var arch = new Architecture(depths, dims, convMlp);
            return new ModelVariant(name, "convnext", $"ConvNeXt V1 {what}: depths {string.Join('-', depths)}, dims {string.Join('-', dims)}",
                SmallInputStemStride: 4, c => new ConvNeXt(c, arch));
        }
        yield return V("convnext_atto", [2, 2, 6, 2], [40, 80, 160, 320], true, "atto");
        yield return V("convnext_femto", [2, 2, 6, 2], [48, 96, 192, 384], true, "femto");
        yield return V("convnext_pico", [2, 2, 6, 2], [64, 128, 256, 512], true, "pico");
        yield return V("convnext_nano", [2, 2, 8, 2], [80, 160, 320, 640], true, "nano");
        yield return V("convnext_tiny", [3, 3, 9, 3], [96, 192, 384, 768], false, "tiny");
        yield return V("convnext_small", [3, 3, 27, 3], [96, 192, 384, 768], false, "small");
        yield return V("convnext_base", [3, 3, 27, 3], [128, 256, 512, 1024], false, "base");
    }
}
