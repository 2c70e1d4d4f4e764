using TorchSharp;
using TorchSharp.Modules;
using Updp.Checkpoints;
using static TorchSharp.torch;

namespace Updp.Models.DeiT;

// DeiT (Touvron et al., 2021), i.e. timm's VisionTransformer with class-token pooling, with timm's
// module and parameter names, so timm state dicts load as they are. Read bottom-up: patch
// embedding, attention, MLP, block, model, state-dict adapter, configurations, registered variants.

/// <summary>
/// A square patchify convolution (<c>proj</c>, kernel = stride = patch) whose map is flattened to
/// tokens: [B, C, H, W] → [B, (H/p)·(W/p), D], patches in row-major order as in timm.
/// </summary>
public sealed class PatchEmbed : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly Conv2d proj;
#pragma warning restore IDE1006

    public PatchEmbed(long inChans, long dim, int patch) : base(nameof(PatchEmbed))
    {
        Patch = patch;
        proj = nn.Conv2d(inChans, dim, kernel_size: patch, stride: patch);
        RegisterComponents();
    }

    public int Patch { get; }

    public override Tensor forward(Tensor x) => proj.call(x).flatten(2).transpose(1, 2);
}

/// <summary>
/// Multi-head self-attention: <c>qkv</c> (D→3D) → softmax(QKᵀ/√d)·V per head → <c>proj</c> (D→D).
/// Runs libtorch's fused scaled_dot_product_attention, which computes the same function as the
/// explicit softmax (checked against it in the tests).
/// </summary>
public sealed class DeiTAttention : nn.Module<Tensor, Tensor>, IMacCounter
{
#pragma warning disable IDE1006
    private readonly Linear qkv;
    private readonly Linear proj;
#pragma warning restore IDE1006

    public DeiTAttention(long dim, int numHeads) : base(nameof(DeiTAttention))
    {
        if (dim % numHeads != 0)
        {
            throw new ArgumentException($"the embedding dimension {dim} is not divisible by {numHeads} heads", nameof(numHeads));
        }
        NumHeads = numHeads;
        qkv = nn.Linear(dim, 3 * dim);
        proj = nn.Linear(dim, dim);
        RegisterComponents();
    }

    public int NumHeads { get; }

    public Linear Qkv => qkv;

    public Linear Proj => proj;

    public override Tensor forward(Tensor x)
    {
        var (b, n, c) = (x.shape[0], x.shape[1], x.shape[2]);
        var parts = qkv.call(x).reshape(b, n, 3, NumHeads, c / NumHeads).permute(2, 0, 3, 1, 4).unbind(0);
        var o = nn.functional.scaled_dot_product_attention(parts[0], parts[1], parts[2]);
        return proj.call(o.transpose(1, 2).reshape(b, n, c));
    }

    /// <summary>qkv and proj (4·N·D² per image) plus the two attention matmuls QKᵀ and A·V (2·N²·D).</summary>
    public long CountMacs(Tensor input, Tensor output)
    {
        var (b, n, c) = (input.shape[0], input.shape[1], input.shape[2]);
        return b * ((4 * n * c * c) + (2 * n * n * c));
    }
}

/// <summary>fc1 (D→hidden) → exact GELU → fc2 (hidden→D), on tokens.</summary>
public sealed class DeiTMlp : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006
    private readonly Linear fc1;
    private readonly Linear fc2;
#pragma warning restore IDE1006

    public DeiTMlp(long dim, long hidden) : base(nameof(DeiTMlp))
    {
        fc1 = nn.Linear(dim, hidden);
        fc2 = nn.Linear(hidden, dim);
        RegisterComponents();
    }

    public Linear Fc1 => fc1;

    public Linear Fc2 => fc2;

    public override Tensor forward(Tensor x) => fc2.call(nn.functional.gelu(fc1.call(x)));
}

/// <summary>
/// x → x + attn(norm1(x)) → x + mlp(norm2(x)), pre-norm with LayerNorms (eps 1e-6) over D; no
/// layer scale (DeiT's <c>init_values</c> is None).
/// </summary>
public sealed class DeiTBlock : nn.Module<Tensor, Tensor>
{
    public const double NormEps = 1e-6;

#pragma warning disable IDE1006 // PyTorch parameter names are the checkpoint contract.
    private readonly LayerNorm norm1;
    private readonly DeiTAttention attn;
    private readonly LayerNorm norm2;
    private readonly DeiTMlp mlp;
    private readonly DropPath drop_path;
#pragma warning restore IDE1006

    public DeiTBlock(long dim, int numHeads, double mlpRatio, double dropPath) : base(nameof(DeiTBlock))
    {
        Dim = dim;
        norm1 = nn.LayerNorm(dim, eps: NormEps);
        attn = new DeiTAttention(dim, numHeads);
        norm2 = nn.LayerNorm(dim, eps: NormEps);
        mlp = new DeiTMlp(dim, (long)(dim * mlpRatio));
        drop_path = new DropPath(dropPath);
        RegisterComponents();
    }

    public long Dim { get; }

    public LayerNorm Norm1 => norm1;

    public DeiTAttention Attn => attn;

    public LayerNorm Norm2 => norm2;

    public DeiTMlp Mlp => mlp;

    internal DropPath DropPath => drop_path;

    public override Tensor forward(Tensor x)
    {
        x = x.Plus(drop_path.call(attn.call(norm1.call(x))));
        return x.Plus(drop_path.call(mlp.call(norm2.call(x))));
    }
}

/// <summary>
/// The DeiT classifier: patch_embed → prepend cls_token → + pos_embed → blocks → norm → head on
/// the class token.
/// <para>
/// The model is built for one input size, <see cref="ModelConfig.ImgSize"/> (default 224), with
/// patch size <see cref="ModelConfig.StemStride"/> (default 16): pos_embed has (ImgSize/patch)² + 1
/// rows. For 32×32 one-channel inputs (Fashion-MNIST padded to 32) the tool uses patch 4: 8×8 = 64
/// patch tokens plus the class token, pos_embed [1, 65, D]
/// (<c>ModelConfig.ForInput(name, 32, 1, 10)</c>, or <c>--input-size 32</c> on the command line).
/// </para>
/// </summary>
public sealed class DeiT : ImageClassifier
{
    /// <summary>The architecture of a named variant (timm's configurations).</summary>
    public sealed record Architecture(int EmbedDim, int Depth, int NumHeads, double MlpRatio = 4);

    public const int DefaultPatchSize = 16;

    public const int DefaultImgSize = 224;

    /// <summary>Patch size used for 32×32 inputs: 64 patch tokens.</summary>
    public const int SmallInputPatchSize = 4;

#pragma warning disable IDE1006
    private readonly Parameter cls_token;
    private readonly Parameter pos_embed;
    private readonly PatchEmbed patch_embed;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> blocks;
    private readonly LayerNorm norm;
    private readonly Linear head;
#pragma warning restore IDE1006

    // Replaced as a whole by ReplaceBlock, so that callers may replace blocks while enumerating Blocks.
    private IReadOnlyList<PrunableBlock> _blocks;

    public DeiT(ModelConfig config, Architecture arch) : base(nameof(DeiT), config)
    {
        Arch = arch;
        var patch = config.StemStride ?? DefaultPatchSize;
        ImgSize = config.ImgSize ?? DefaultImgSize;
        if (patch < 1 || ImgSize < patch || ImgSize % patch != 0)
        {
            throw new ArgumentException(
                $"{config.Name}: the input size {ImgSize} must be a positive multiple of the patch size (stem_stride) {patch}", nameof(config));
        }
        var grid = ImgSize / patch;
        cls_token = new Parameter(zeros(1, 1, arch.EmbedDim).DetachFromDisposeScope());
        pos_embed = new Parameter(zeros(1, (grid * grid) + 1, arch.EmbedDim).DetachFromDisposeScope());
        patch_embed = new PatchEmbed(config.InChans, arch.EmbedDim, patch);
        var rates = Enumerable.Range(0, arch.Depth).Select(i => arch.Depth > 1 ? config.DropPathRate * i / (arch.Depth - 1) : 0).ToArray();
        blocks = new ModuleList<nn.Module<Tensor, Tensor>>(
            rates.Select(r => (nn.Module<Tensor, Tensor>)new DeiTBlock(arch.EmbedDim, arch.NumHeads, arch.MlpRatio, r)).ToArray());
        norm = nn.LayerNorm(arch.EmbedDim, eps: DeiTBlock.NormEps);
        head = nn.Linear(arch.EmbedDim, config.NumClasses);
        RegisterComponents();

        // timm's init: truncated normal (std 0.02) for linear layers and pos_embed, 1e-6 for the
        // class token. A normal of std 0.02 clipped at ±2 is a plain normal in practice.
        Init.TruncNormalWeights(this);
        using (no_grad())
        {
            nn.init.normal_(pos_embed, 0, 0.02);
            nn.init.normal_(cls_token, 0, 1e-6);
        }
        _blocks = Enumerable.Range(0, arch.Depth).Select(i => new PrunableBlock(i, 0, $"blocks.{i}", blocks[i])).ToList().AsReadOnly();
    }

    public Architecture Arch { get; }

    /// <summary>The only input side the model accepts (pos_embed is sized for it).</summary>
    public int ImgSize { get; }

    public int PatchSize => patch_embed.Patch;

    public override IReadOnlyList<PrunableBlock> Blocks => _blocks;

    public override nn.Module<Tensor, Tensor> ReplaceBlock(int index, nn.Module<Tensor, Tensor> module)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _blocks.Count);
        module.train(training);
        var old = ModuleLists.Replace(blocks, index, module);
        var all = _blocks.ToArray();
        all[index] = all[index] with { Module = module };
        _blocks = Array.AsReadOnly(all);
        return old;
    }

    public override Tensor ForwardFeatures(Tensor x) => Tokens(x).select(1, 0);

    public override Tensor forward(Tensor x) => head.call(ForwardFeatures(x));

    /// <summary>The normalised tokens after the last block, class token first: [B, 1 + patches, D].</summary>
    private Tensor Tokens(Tensor x)
    {
        if (x.dim() != 4 || x.shape[2] != ImgSize || x.shape[3] != ImgSize)
        {
            throw new ArgumentException(
                $"{Config.Name} is built for {Config.InChans}×{ImgSize}×{ImgSize} inputs (pos_embed has {pos_embed.shape[1]} rows: " +
                $"{ImgSize / PatchSize}² patches of {PatchSize} px + the class token), got [{string.Join(", ", x.shape)}]");
        }
        x = patch_embed.call(x);
        x = cat([cls_token.expand(x.shape[0], -1, -1), x], 1).Plus(pos_embed);
        foreach (var block in blocks)
        {
            x = block.call(x);
        }
        return norm.call(x);
    }

    /// <summary>
    /// The configuration of a timm DeiT state dict: input channels and patch size from
    /// <c>patch_embed.proj.weight</c> [D, in_chans, p, p], input size from <c>pos_embed</c>
    /// [1, (img/p)² + 1, D], classes from <c>head.weight</c> [num_classes, D].
    /// </summary>
    internal static ModelConfig InferConfig(string modelName, IReadOnlyDictionary<string, Tensor> stateDict, string sourceName)
    {
        var proj = StateDictAdapters.Require(stateDict, "patch_embed.proj.weight", 4, sourceName);
        var pos = StateDictAdapters.Require(stateDict, "pos_embed", 3, sourceName);
        var head = StateDictAdapters.Require(stateDict, "head.weight", 2, sourceName);
        if (proj.shape[2] != proj.shape[3])
        {
            throw new CheckpointException(
                $"'{sourceName}': patch_embed.proj.weight has a non-square kernel [{string.Join(", ", proj.shape)}]; DeiT's patches are square", sourceName);
        }
        var patches = pos.shape[1] - 1;
        var grid = (long)Math.Round(Math.Sqrt(patches));
        if (patches < 1 || grid * grid != patches)
        {
            throw new CheckpointException(
                $"'{sourceName}': pos_embed has shape [{string.Join(", ", pos.shape)}]; expected 1 + a square number of rows (class token + patch grid)", sourceName);
        }
        return new ModelConfig
        {
            Name = modelName,
            InChans = checked((int)proj.shape[1]),
            NumClasses = checked((int)head.shape[0]),
            StemStride = checked((int)proj.shape[2]),
            ImgSize = checked((int)(grid * proj.shape[2])),
        };
    }

    /// <summary>
    /// timm's DeiT configurations (patch 16 at 224², 196 patch tokens). For 32×32 inputs the tool
    /// uses patch 4 (64 patch tokens) and sizes pos_embed for 32×32: see <see cref="DeiT"/>.
    /// </summary>
    public static IEnumerable<ModelVariant> Variants()
    {
        static ModelVariant V(string name, int dim, int depth, int heads, string what)
        {
            var arch = new Architecture(dim, depth, heads);
            return new ModelVariant(name, "deit", $"DeiT {what}: patch 16, dim {dim}, depth {depth}, {heads} heads",
                SmallInputPatchSize, c => new DeiT(c, arch), FixedInputSize: true);
        }
        yield return V("deit_tiny_patch16_224", 192, 12, 3, "tiny");
        yield return V("deit_small_patch16_224", 384, 12, 6, "small");
    }
}
