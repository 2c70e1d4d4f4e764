using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Checkpoints;

/// <summary>A model loaded from a checkpoint, in eval mode, with the sidecar it came with (null for a bare state dict).</summary>
public sealed record LoadedCheckpoint(ImageClassifier Model, CheckpointMeta? Meta);

/// <summary>Optional hooks for <see cref="Checkpoint.Load"/>.</summary>
public sealed record CheckpointLoadOptions
{
    /// <summary>
    /// Adjusts the configuration (from the sidecar, or inferred from the tensors) before the model is
    /// built, e.g. to set a drop-path rate for fine-tuning. Changes to the structure make loading fail.
    /// </summary>
    public Func<ModelConfig, ModelConfig>? Configure { get; init; }

    /// <summary>
    /// Builds the model the tensors are loaded into; defaults to <see cref="ModelRegistry.Create(ModelConfig)"/>.
    /// For models whose structure the configuration alone does not give (e.g. pruned ones, from state in <see cref="CheckpointMeta.Extra"/>).
    /// </summary>
    public Func<ModelConfig, CheckpointMeta?, ImageClassifier>? CreateModel { get; init; }
}

/// <summary>
/// Updp checkpoints: <c>NAME.safetensors</c> with the weights plus a <c>NAME.json</c> sidecar
/// (<see cref="CheckpointMeta"/>). Loading also accepts bare state dicts, as PyTorch and timm write
/// them, given the model name.
/// </summary>
public static class Checkpoint
{
    /// <summary>The extension of the weights file of an Updp checkpoint.</summary>
    public const string WeightsExtension = ".safetensors";

    private const string DataParallelPrefix = "module.";

    // Safetensors metadata key holding CheckpointMeta.WeightsId.
    private const string WeightsIdKey = "updp_weights_id";

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The sidecar next to a weights file: same directory and base name, extension <c>.json</c>.</summary>
    public static string SidecarPath(string weightsPath) => Path.ChangeExtension(weightsPath, ".json");

    /// <summary>
    /// Writes <paramref name="model"/>'s parameters and buffers to <paramref name="path"/> (a
    /// <c>.safetensors</c> file, parent directories created) and the sidecar next to it. Each file is
    /// written to a temporary file in the same directory and renamed over the target, so a failed
    /// save leaves any earlier checkpoint there intact and no partial or temporary file behind.
    /// A crash between the two renames leaves a pair that <see cref="Load"/> refuses (see
    /// <see cref="CheckpointMeta.WeightsId"/>) rather than mismatched weights.
    /// </summary>
    /// <param name="meta">Classes, epoch, metrics and extras to record; its model, version, id and (if null) creation time are filled in.</param>
    /// <returns>The sidecar as written.</returns>
    /// <exception cref="CheckpointException">The files could not be written.</exception>
    public static CheckpointMeta Save(ImageClassifier model, string path, CheckpointMeta? meta = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!path.EndsWith(WeightsExtension, StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException($"a checkpoint path must end in {WeightsExtension}: '{path}'", nameof(path));
        }
        var full = Path.GetFullPath(path);
        var sidecar = SidecarPath(full);
        var written = (meta ?? new CheckpointMeta()) with
        {
            FormatVersion = CheckpointMeta.CurrentFormatVersion,
            Model = model.Config,
            Created = meta?.Created ?? DateTimeOffset.UtcNow,
            WeightsId = Guid.NewGuid().ToString("N"),
        };
        var metadata = new Dictionary<string, string> { ["format"] = "pt", [WeightsIdKey] = written.WeightsId };

        string? tmpWeights = null;
        string? tmpSidecar = null;
        try
        {
            var json = JsonSerializer.SerializeToUtf8Bytes(written, JsonOptions);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            foreach (var target in new[] { full, sidecar })
            {
                // Checked up front: File.Move onto a directory would fail only after the weights were replaced.
                if (Directory.Exists(target))
                {
                    throw new CheckpointException($"cannot write checkpoint '{path}': '{target}' is a directory", path);
                }
            }
            tmpWeights = AtomicFile.TempPath(full);
            AtomicFile.WriteNew(tmpWeights, s => Safetensors.Write(s, model.state_dict(), metadata));
            tmpSidecar = AtomicFile.TempPath(sidecar);
            AtomicFile.WriteNew(tmpSidecar, s =>
            {
                s.Write(json);
                s.WriteByte((byte)'\n');
            });
            File.Move(tmpWeights, full, overwrite: true);
            tmpWeights = null;
            File.Move(tmpSidecar, sidecar, overwrite: true);
            tmpSidecar = null;
            return written;
        }
        catch (Exception e) when (e is not CheckpointException and not OutOfMemoryException)
        {
            throw new CheckpointException($"cannot write checkpoint '{path}': {StateDict.FirstLine(e.Message)}", path, e);
        }
        finally
        {
            AtomicFile.TryDelete(tmpWeights);
            AtomicFile.TryDelete(tmpSidecar);
        }
    }

    /// <summary>
    /// Reads the sidecar of a weights file, or returns null when there is none. Values no Updp
    /// checkpoint has (no input channels, a million classes, a NaN std) are refused rather than
    /// passed on to build a model from.
    /// </summary>
    /// <exception cref="CheckpointException">The sidecar exists but is not a valid Updp sidecar this build can read.</exception>
    public static CheckpointMeta? ReadMeta(string weightsPath)
    {
        var sidecar = SidecarPath(weightsPath);
        if (!File.Exists(sidecar))
        {
            return null;
        }
        try
        {
            RegularFile.Require(sidecar, "sidecar");
            // Duplicate keys are refused by the parser (JsonObject would throw ArgumentException on first use).
            var node = JsonNode.Parse(File.ReadAllBytes(sidecar), documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }) as JsonObject
                ?? throw new CheckpointException($"sidecar '{sidecar}' is not a JSON object", sidecar);
            if (!node.ContainsKey("format_version") || !node.ContainsKey("model"))
            {
                throw new CheckpointException(
                    $"'{sidecar}' is not an Updp checkpoint sidecar (no format_version or model); move it away to load '{weightsPath}' as a bare state dict", sidecar);
            }
            var meta = node.Deserialize<CheckpointMeta>(JsonOptions)!;
            if (meta.FormatVersion > CheckpointMeta.CurrentFormatVersion)
            {
                throw new CheckpointException(
                    $"sidecar '{sidecar}' has format version {meta.FormatVersion}; this build reads up to {CheckpointMeta.CurrentFormatVersion}", sidecar);
            }
            if (meta.Model is null)
            {
                throw new CheckpointException($"sidecar '{sidecar}' has no model configuration", sidecar);
            }
            if (Implausible(meta) is { } why)
            {
                throw new CheckpointException($"sidecar '{sidecar}' is damaged or was not written by Updp: {why}", sidecar);
            }
            // Explicit JSON nulls would otherwise surface as null collections.
            return meta with { Classes = meta.Classes ?? [], Metrics = meta.Metrics ?? new Dictionary<string, double>() };
        }
        catch (Exception e) when (e is JsonException or IOException or InvalidDataException or UnauthorizedAccessException or InvalidOperationException)
        {
            throw new CheckpointException($"cannot read sidecar '{sidecar}': {(e is JsonException json ? Describe(json) : e.Message)}", sidecar, e);
        }
    }

    // System.Text.Json says "The JSON value could not be converted to System.Int32. Path: $.model.num_classes | …";
    // the user wrote the key, not the .NET type.
    internal static string Describe(JsonException e)
    {
        const string prefix = "The JSON value could not be converted to ";
        if (e.Path is not { } path || !e.Message.StartsWith(prefix, StringComparison.Ordinal))
        {
            return e.Message.Split('\n')[0];
        }
        var type = e.Message[prefix.Length..].Split(". Path:", 2)[0].Trim();
        var expected = type switch
        {
            "System.Int32" or "System.Int64" or "System.Nullable`1[System.Int32]" or "System.Nullable`1[System.Int64]" => "a whole number in range",
            "System.Double" or "System.Single" or "System.Nullable`1[System.Double]" => "a number",
            "System.String" => "a string",
            "System.Boolean" => "true or false",
            _ when type.Contains("List", StringComparison.Ordinal) || type.EndsWith("[]", StringComparison.Ordinal) => "a list",
            _ => "a value of another kind",
        };
        return $"'{path.TrimStart('$').TrimStart('.')}' has a value of the wrong type or out of range (expected {expected})";
    }

    // Bounds on the sidecar's numbers, far outside anything Updp writes: the model is built from
    // them before any tensor is compared with it, so a damaged value must not make it allocate
    // gigabytes (a million classes) or fail inside libtorch (no input channels).
    internal const int MaxInChans = 64;
    internal const int MaxNumClasses = 100_000;
    internal const int MaxStemStride = 64;
    internal const int MaxImageSide = 8192;
    internal const int MaxPatchesPerSide = 256;

    // Why the sidecar's values cannot be right, or null when they can.
    private static string? Implausible(CheckpointMeta meta)
    {
        var m = meta.Model!;
        static bool Finite(double v) => double.IsFinite(v);
        if (m.InChans is < 1 or > MaxInChans)
        {
            return $"in_chans {m.InChans} is not from 1 to {MaxInChans}";
        }
        if (m.NumClasses is < 1 or > MaxNumClasses)
        {
            return $"num_classes {m.NumClasses} is not from 1 to {MaxNumClasses}";
        }
        if (m.StemStride is < 1 or > MaxStemStride)
        {
            return $"stem_stride {m.StemStride} is not from 1 to {MaxStemStride}";
        }
        // A vision transformer has (img_size / patch)² positions; a patch of 16 (the default) keeps the largest image below the bound.
        if (m.ImgSize is { } img && (img < 1 || img > MaxImageSide || img / (m.StemStride ?? 16) > MaxPatchesPerSide))
        {
            return $"img_size {img} is not from 1 to {MaxImageSide}, or makes more than {MaxPatchesPerSide} patches a side with stem_stride {m.StemStride}";
        }
        if (!(m.DropPathRate is >= 0 and < 1))
        {
            return $"drop_path_rate {m.DropPathRate} is not in [0, 1)";
        }
        if (m.LayerScaleInit is { } ls && !Finite(ls))
        {
            return $"ls_init_value {ls} is not a finite number";
        }
        if (meta.Epoch is < 0)
        {
            return $"epoch {meta.Epoch} is negative";
        }
        if (meta.Preprocessing is { } p)
        {
            if (p.ImageSize is < 1 or > MaxImageSide || p.InputSize is < 1 or > MaxImageSide)
            {
                return $"preprocessing sizes {p.ImageSize} and {p.InputSize} are not both from 1 to {MaxImageSide}";
            }
            if (!Finite(p.Mean) || !(p.Std > 0 && Finite(p.Std))
                || p.ChannelMean?.Any(v => !Finite(v)) == true || p.ChannelStd?.Any(v => !(v > 0 && Finite(v))) == true)
            {
                return "preprocessing normalisation has a mean that is not a finite number or a std that is not a positive one";
            }
            if (p.Channels is < 1 or > MaxInChans)
            {
                return $"preprocessing channels {p.Channels} is not from 1 to {MaxInChans}";
            }
            if (p.CropPct is { } crop && !(crop is > 0 and <= 1))
            {
                return $"preprocessing crop_pct {crop} is not in (0, 1]";
            }
        }
        return null;
    }

    /// <summary>
    /// Loads a checkpoint into a new model, strictly (see <see cref="StateDict.LoadInto"/>), and
    /// returns it in eval mode.
    /// <list type="bullet">
    /// <item>With a sidecar (<see cref="SidecarPath"/>), the model comes from it; a given
    /// <paramref name="modelName"/> must agree.</item>
    /// <item>Without one, <paramref name="path"/> is a bare state dict (PyTorch .pt/.pth/.bin or
    /// safetensors, possibly nested, possibly with DataParallel's <c>module.</c> prefix) and
    /// <paramref name="modelName"/> is required; the family's <see cref="StateDictAdapter"/> infers
    /// classes, input channels and stem stride from the tensors.</item>
    /// </list>
    /// </summary>
    /// <exception cref="CheckpointException">The checkpoint cannot be read or does not fit the model; the message names the file and tensors.</exception>
    public static LoadedCheckpoint Load(string path, string? modelName = null, CheckpointLoadOptions? options = null)
    {
        var (meta, config, source, stateDict) = ReadSource(path, modelName);
        try
        {
            if (options?.Configure is { } configure)
            {
                config = configure(config);
            }
            var model = options?.CreateModel is { } create ? create(config, meta) : Create(config, path);
            try
            {
                StateDict.LoadInto(model, source, path);
                RequireFinite(model, path);
            }
            catch
            {
                model.Dispose();
                throw;
            }
            model.eval();
            return new LoadedCheckpoint(model, meta);
        }
        finally
        {
            foreach (var t in stateDict.Values)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>
    /// Loads a checkpoint (usually a timm or torchvision ImageNet state dict) into a model for
    /// <paramref name="numClasses"/> classes and <paramref name="inChans"/> input channels, for
    /// fine-tuning: a classifier whose class count differs is left freshly initialised (listed in
    /// <see cref="TransferResult.Replaced"/>), and a stem conv made for other input channels is
    /// adapted as timm's <c>adapt_input_conv</c> does (3 → 1 sums over the input channels, 1 → C
    /// repeats and divides by C; listed in <see cref="TransferResult.Adapted"/>). Every other
    /// tensor must fit exactly. The model is returned in training mode.
    /// </summary>
    /// <exception cref="CheckpointException">The checkpoint cannot be read or does not fit the model apart from head and stem.</exception>
    public static TransferResult LoadForTransfer(string path, string? modelName, int numClasses, int inChans, Func<ModelConfig, ModelConfig>? configure = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numClasses);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inChans);
        var (meta, original, source, stateDict) = ReadSource(path, modelName);
        try
        {
            var config = original with { NumClasses = numClasses, InChans = inChans };
            if (configure is not null)
            {
                config = configure(config);
            }
            var model = Create(config, path);
            try
            {
                var (adapted, replaced, changed) = TransferAdapter.Adapt(model.state_dict(), source, original, config);
                StateDict.LoadInto(model, adapted, path);
                foreach (var t in changed)
                {
                    t.Dispose();
                }
                RequireFinite(model, path);
                model.train();
                return new TransferResult(model, replaced.Select(r => r.Name).ToList(), replaced.Where(r => r.Adapted).Select(r => r.Name).ToList(), original, meta);
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        finally
        {
            foreach (var t in stateDict.Values)
            {
                t.Dispose();
            }
        }
    }

    // The checkpoint's sidecar (null for a bare state dict), the configuration it was saved with or
    // that its tensors imply, its tensors under our names, and the raw tensors to dispose.
    private static (CheckpointMeta? Meta, ModelConfig Config, IReadOnlyDictionary<string, Tensor> Source, Dictionary<string, Tensor> Raw) ReadSource(
        string path, string? modelName)
    {
        if (!File.Exists(path))
        {
            throw new CheckpointException(
                Directory.Exists(path) ? $"'{path}' is a directory, not a checkpoint file" : $"checkpoint '{path}' does not exist", path);
        }
        var meta = ReadMeta(path);
        StateDictAdapter? adapter = null;
        if (meta is null)
        {
            if (modelName is null)
            {
                throw new CheckpointException(
                    $"'{path}' has no sidecar '{SidecarPath(path)}', so it does not say which model it holds; " +
                    "give the model name (e.g. --model convnext_atto) to load it as a bare state dict", path);
            }
            var variant = Variant(modelName, path, "");
            adapter = StateDictAdapters.Find(variant.Family)
                ?? throw new CheckpointException($"cannot load '{path}' as {modelName}: bare state dicts of the {variant.Family} family are not supported", path);
        }
        else if (modelName is not null && modelName != meta.Model!.Name)
        {
            throw new CheckpointException($"'{path}' holds a {meta.Model.Name} model, not {modelName}", path);
        }

        var stateDict = StateDict.Read(path, out var safetensorsMetadata);
        try
        {
            IReadOnlyDictionary<string, Tensor> source = stateDict;
            ModelConfig config;
            if (meta is not null)
            {
                if (meta.WeightsId is not null
                    && (!safetensorsMetadata.TryGetValue(WeightsIdKey, out var id) || id != meta.WeightsId))
                {
                    throw new CheckpointException(
                        $"'{SidecarPath(path)}' does not belong to '{path}' (their weights ids differ; was a save interrupted?)", path);
                }
                config = meta.Model!;
            }
            else
            {
                source = StateDict.StripPrefix(source, DataParallelPrefix);
                if (adapter!.MapKey is { } mapKey)
                {
                    source = StateDict.MapKeys(source, mapKey, path);
                }
                config = adapter.InferConfig(modelName!, source, path);
            }
            return (meta, config, source, stateDict);
        }
        catch
        {
            foreach (var t in stateDict.Values)
            {
                t.Dispose();
            }
            throw;
        }
    }

    private static ModelVariant Variant(string name, string path, string where) =>
        ModelRegistry.Contains(name)
            ? ModelRegistry.Get(name)
            : throw new CheckpointException(
                $"cannot load '{path}': unknown model '{name}'{where}; known models: {string.Join(", ", ModelRegistry.All.Select(v => v.Name))}", path);

    // Weights with NaN or ±inf (what a diverged run leaves) compute garbage everywhere they are used.
    private static void RequireFinite(ImageClassifier model, string path)
    {
        using var scope = NewDisposeScope();
        foreach (var (name, tensor) in model.state_dict())
        {
            if (tensor.is_floating_point() && !tensor.isfinite().all().item<bool>())
            {
                throw new CheckpointException($"'{path}': tensor '{name}' holds non-finite values (NaN or ±inf); the run that wrote it diverged", path);
            }
        }
    }

    private static ImageClassifier Create(ModelConfig config, string path)
    {
        Variant(config.Name, path, " in its sidecar");
        try
        {
            return ModelRegistry.Create(config);
        }
        catch (Exception e) when (e is ArgumentException or ExternalException)
        {
            // libtorch refuses some configurations only when it builds a layer (ExternalException).
            throw new CheckpointException($"cannot build the model of '{path}': {StateDict.FirstLine(e.Message)}", path, e);
        }
    }
}
