using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Updp.Models;

// ConvNeXt V1 (Liu et al., 2022) with timm's module and parameter names, so timm state dicts load
// as they are. Read bottom-up: block, stage, model, configurations, registered variants.

/// <summary>
/// x → conv_dw (7×7 depthwise) → norm (LayerNorm over C) → mlp.fc1 (C→4C) → GELU → mlp.fc2 (4C→C)
/// → ×gamma → +x. With <c>convMlp</c> (timm's atto..nano) fc1/fc2 are 1×1 convs on NCHW; otherwise
/// they are Linear layers on channels-last tensors, as in timm's tiny and larger models.
/// </summary>
public sealed class ConvNeXtBlock : nn.Module<Tensor, Tensor>
{
    private readonly bool _convMlp;
    private readonly long[] _normShape;

#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly Conv2d conv_dw;
    private readonly nn.Module<Tensor, Tensor> norm;
    private readonly ConvNeXtMlp mlp;
    private readonly Parameter gamma;
    private readonly DropPath drop_path;
#pragma warning restore IDE1006

    public ConvNeXtBlock(long dim, bool convMlp, double dropPath, double layerScaleInit = 1e-6) : base(nameof(ConvNeXtBlock))
    {
        _convMlp = convMlp;
        _normShape = [dim];
        conv_dw = nn.Conv2d(dim, dim, kernel_size: 7, padding: 3, groups: dim);
        norm = convMlp ? new LayerNorm2d(dim) : nn.LayerNorm(dim, eps: 1e-6);
        mlp = new ConvNeXtMlp(dim, 4 * dim, convMlp);
        gamma = new Parameter(full(dim, layerScaleInit));
        drop_path = new DropPath(dropPath);
        RegisterComponents();
    }

    public long Dim => _normShape[0];

    public bool ConvMlp => _convMlp;

    public Conv2d ConvDw => conv_dw;

    public nn.Module<Tensor, Tensor> Norm => norm;

    public ConvNeXtMlp Mlp => mlp;

    public Parameter Gamma => gamma;

    public override Tensor forward(Tensor input)
    {
        var x = conv_dw.call(input);
        if (_convMlp)
        {
            x = mlp.call(norm.call(x)) * gamma.view(1, -1, 1, 1);
        }
        else
        {
            x = x.permute(0, 2, 3, 1);
            x = (mlp.call(norm.call(x)) * gamma).permute(0, 3, 1, 2);
        }
        return drop_path.call(x) + input;
    }
}

/// <summary>fc1 → GELU → fc2, as 1×1 convs (NCHW) or Linear layers (channels last).</summary>
public sealed class ConvNeXtMlp : nn.Module<Tensor, Tensor>
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

    public nn.Module<Tensor, Tensor> Fc1 => fc1;

    public nn.Module<Tensor, Tensor> Fc2 => fc2;

    public override Tensor forward(Tensor x) => fc2.call(nn.functional.gelu(fc1.call(x)));
}

/// <summary>Optional downsampling (LayerNorm2d + 2×2 stride-2 conv) followed by the blocks.</summary>
public sealed class ConvNeXtStage : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly nn.Module<Tensor, Tensor> downsample;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> blocks;
#pragma warning restore IDE1006

    public ConvNeXtStage(long inDim, long outDim, int depth, bool downsampleInput, bool convMlp, IReadOnlyList<double> dropPaths)
        : base(nameof(ConvNeXtStage))
    {
        downsample = downsampleInput
            ? nn.Sequential(new LayerNorm2d(inDim), nn.Conv2d(inDim, outDim, kernel_size: 2, stride: 2))
            : nn.Identity();
        blocks = new ModuleList<nn.Module<Tensor, Tensor>>(
            Enumerable.Range(0, depth).Select(j => (nn.Module<Tensor, Tensor>)new ConvNeXtBlock(outDim, convMlp, dropPaths[j])).ToArray());
        RegisterComponents();
    }

    /// <summary>The residual blocks; the pruning stages swap entries for pruned or merged forms.</summary>
    public ModuleList<nn.Module<Tensor, Tensor>> Blocks => blocks;

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

/// <summary>The ConvNeXt V1 classifier: stem, four stages, head.</summary>
public sealed class ConvNeXt : ImageClassifier
{
    /// <summary>The architecture of a named variant (timm's configurations).</summary>
    public sealed record Architecture(int[] Depths, int[] Dims, bool ConvMlp);

    public const int DefaultStemStride = 4;

#pragma warning disable IDE1006
    private readonly Sequential stem;
    private readonly ModuleList<ConvNeXtStage> stages;
    private readonly ConvNeXtHead head;
#pragma warning restore IDE1006

    private readonly List<PrunableBlock> _blocks = [];

    public ConvNeXt(ModelConfig config, Architecture arch) : base(nameof(ConvNeXt), config)
    {
        Arch = arch;
        var stemStride = config.StemStride ?? DefaultStemStride;
        if (stemStride < 1)
        {
            throw new ArgumentException($"stem_stride must be ≥ 1, got {stemStride}", nameof(config));
        }
        stem = nn.Sequential(
            nn.Conv2d(config.InChans, arch.Dims[0], kernel_size: stemStride, stride: stemStride),
            new LayerNorm2d(arch.Dims[0]));

        var total = arch.Depths.Sum();
        var rates = Enumerable.Range(0, total).Select(i => total > 1 ? config.DropPathRate * i / (total - 1) : 0).ToArray();
        stages = new ModuleList<ConvNeXtStage>();
        var offset = 0;
        for (var i = 0; i < arch.Depths.Length; i++)
        {
            var inDim = i == 0 ? arch.Dims[0] : arch.Dims[i - 1];
            stages.Add(new ConvNeXtStage(inDim, arch.Dims[i], arch.Depths[i], i > 0, arch.ConvMlp, rates[offset..(offset + arch.Depths[i])]));
            offset += arch.Depths[i];
        }
        head = new ConvNeXtHead(arch.Dims[^1], config.NumClasses);
        RegisterComponents();

        Init.TruncNormalWeights(this);
        for (var i = 0; i < stages.Count; i++)
        {
            var stageBlocks = stages[i].Blocks;
            for (var j = 0; j < stageBlocks.Count; j++)
            {
                _blocks.Add(new PrunableBlock(_blocks.Count, i, $"stages.{i}.blocks.{j}", stageBlocks[j]));
            }
        }
    }

    public Architecture Arch { get; }

    public override IReadOnlyList<PrunableBlock> Blocks => _blocks;

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

    /// <summary>timm's ConvNeXt V1 configurations.</summary>
    public static IEnumerable<ModelVariant> Variants()
    {
        static ModelVariant V(string name, int[] depths, int[] dims, bool convMlp, string what)
        {
            var arch = new Architecture(depths, dims, convMlp);
            return new ModelVariant(name, "convnext", $"ConvNeXt V1 {what}: depths {string.Join('-', depths)}, dims {string.Join('-', dims)}",
                SmallInputStemStride: 2, c => new ConvNeXt(c, arch));
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
