using System.Text.Json;
using System.Text.Json.Serialization;
using Updp.Checkpoints;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Pruning.Blocks;

/// <summary>
/// Which blocks of a model are pruned (with their λ), merged, dropped or fading (with their λ): what
/// a checkpoint needs, besides its <see cref="ModelConfig"/>, to rebuild the model's structure.
/// Stored in the sidecar under <c>extra.pruning</c>, e.g.
/// <c>{"pruned": {"1": 0.4}, "merged": [3, 7], "dropped": [10], "fading": {"5": 0.4}}</c>
/// (<c>fading</c> only when a block is fading, so other sidecars read as before).
/// </summary>
public sealed record PruningState
{
    /// <summary>Blocks in progressive form: global index → λ.</summary>
    [JsonPropertyName("pruned")] public IReadOnlyDictionary<int, double> Pruned { get; init; } = new Dictionary<int, double>();

    /// <summary>Blocks in merged form.</summary>
    [JsonPropertyName("merged")] public IReadOnlyList<int> Merged { get; init; } = [];

    /// <summary>Blocks removed (identity).</summary>
    [JsonPropertyName("dropped")] public IReadOnlyList<int> Dropped { get; init; } = [];

    /// <summary>Blocks in their progressive drop form (<see cref="IFadingBlock"/>): global index → λ; null when there are none.</summary>
    [JsonPropertyName("fading")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyDictionary<int, double>? Fading { get; init; }

    /// <summary>True when every block is in its original form.</summary>
    [JsonIgnore] public bool IsEmpty => Pruned.Count == 0 && Merged.Count == 0 && Dropped.Count == 0 && (Fading?.Count ?? 0) == 0;

    /// <summary>The state of <paramref name="model"/>'s blocks.</summary>
    public static PruningState Of(ImageClassifier model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var forms = model.Blocks.Select(b => (b.Index, Form: model.FormOf(b.Index))).ToList();
        var fading = model.FadingBlocks().ToDictionary(f => f.Block.Index, f => f.Fading.Lambda);
        return new PruningState
        {
            Pruned = model.PrunedBlocks().ToDictionary(p => p.Block.Index, p => p.Progressive.Lambda),
            Merged = forms.Where(f => f.Form == BlockForm.Merged).Select(f => f.Index).ToList(),
            Dropped = forms.Where(f => f.Form == BlockForm.Dropped).Select(f => f.Index).ToList(),
            Fading = fading.Count > 0 ? fading : null,
        };
    }

    /// <summary>
    /// Gives the blocks of <paramref name="model"/>, all in their original form, the forms this state
    /// describes. Merged blocks get their structure only: their weights are meant to be loaded next.
    /// </summary>
    /// <exception cref="ArgumentException">The state does not fit the model (index out of range, a block listed twice, λ outside [0,1]).</exception>
    public void ApplyTo(ImageClassifier model)
    {
        ArgumentNullException.ThrowIfNull(model);
        Validate(model.Blocks.Count);
        if (model.Blocks.FirstOrDefault(b => model.FormOf(b.Index) != BlockForm.Original) is { } changed)
        {
            throw new ArgumentException($"{BlockPruning.Describe(changed)} is already {model.FormOf(changed.Index).ToString().ToLowerInvariant()}", nameof(model));
        }
        foreach (var (index, lambda) in Pruned)
        {
            model.Prune(index).Lambda = lambda;
        }
        foreach (var index in Merged)
        {
            model.Prune(index).Lambda = 1;
            model.Merge(index);
        }
        foreach (var index in Dropped)
        {
            model.Drop(index);
        }
        foreach (var (index, lambda) in Fading ?? new Dictionary<int, double>())
        {
            model.Fade(index).Lambda = lambda;
        }
    }

    /// <summary>The state stored in a sidecar, or null when it has none.</summary>
    /// <exception cref="CheckpointException">The stored state is not valid JSON for a pruning state.</exception>
    public static PruningState? FromMeta(CheckpointMeta? meta)
    {
        if (meta?.Extra?[PrunedModels.ExtraKey] is not { } node)
        {
            return null;
        }
        try
        {
            var state = node.Deserialize<PruningState>()
                ?? throw new CheckpointException($"the sidecar's extra.{PrunedModels.ExtraKey} is null");
            // Explicit JSON nulls would otherwise surface as null collections.
            return state with { Pruned = state.Pruned ?? new Dictionary<int, double>(), Merged = state.Merged ?? [], Dropped = state.Dropped ?? [] };
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"the sidecar's extra.{PrunedModels.ExtraKey} is not a pruning state: {e.Message}", e);
        }
    }

    private void Validate(int blocks)
    {
        var fading = Fading ?? new Dictionary<int, double>();
        var all = Pruned.Keys.Concat(Merged).Concat(Dropped).Concat(fading.Keys).ToList();
        foreach (var index in all)
        {
            if (index < 0 || index >= blocks)
            {
                throw new ArgumentException($"block index {index} is out of range: the model has {blocks} prunable blocks");
            }
        }
        if (all.GroupBy(i => i).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw new ArgumentException($"block {twice.Key} is listed more than once");
        }
        foreach (var (index, lambda) in Pruned.Concat(fading))
        {
            if (lambda is not (>= 0 and <= 1))
            {
                throw new ArgumentException($"block {index} has λ = {lambda}, outside [0, 1]");
            }
        }
    }
}

/// <summary>Saving and loading models whose blocks are pruned, merged or dropped.</summary>
public static class PrunedModels
{
    /// <summary>The key of the <see cref="PruningState"/> in <see cref="CheckpointMeta.Extra"/>.</summary>
    public const string ExtraKey = "pruning";

    /// <summary>Options for <see cref="Checkpoint.Load"/> that rebuild the pruned structure first (on the CPU).</summary>
    public static CheckpointLoadOptions LoadOptions { get; } = new() { CreateModel = Create };

    /// <summary>
    /// <see cref="LoadOptions"/> for a model on <paramref name="device"/>: built there, pruned there,
    /// then loaded (see <see cref="Create(ModelConfig, CheckpointMeta?, Device?)"/> for why in that order).
    /// </summary>
    public static CheckpointLoadOptions LoadOptionsOn(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return Devices.IsCpu(device) ? LoadOptions : new() { CreateModel = (config, meta) => Create(config, meta, device) };
    }

    /// <summary>
    /// Builds the model a sidecar describes, with the block forms of its pruning state (if any) and
    /// freshly initialised weights; usable as <see cref="CheckpointLoadOptions.CreateModel"/>.
    /// </summary>
    /// <exception cref="CheckpointException">The model name is unknown or the pruning state does not fit the model.</exception>
    public static ImageClassifier Create(ModelConfig config, CheckpointMeta? meta) => Create(config, meta, null);

    /// <summary>
    /// As <see cref="Create(ModelConfig, CheckpointMeta?)"/>, on <paramref name="device"/> (null: the
    /// CPU). The model is moved before its blocks take their pruned forms: a pruned form shares
    /// parameters with the original block it was made from, which it keeps outside the model for
    /// <see cref="BlockPruning.Unprune"/>, and TorchSharp's <c>Module.to</c> would copy them apart.
    /// </summary>
    /// <exception cref="CheckpointException">The model name is unknown or the pruning state does not fit the model.</exception>
    public static ImageClassifier Create(ModelConfig config, CheckpointMeta? meta, Device? device)
    {
        ArgumentNullException.ThrowIfNull(config);
        var state = PruningState.FromMeta(meta);
        ImageClassifier model;
        try
        {
            model = ModelRegistry.Create(config);
        }
        catch (ArgumentException e)
        {
            throw new CheckpointException($"cannot build the model: {e.Message}", e);
        }
        try
        {
            if (device is not null)
            {
                model.MoveTo(device);
            }
            state?.ApplyTo(model);
            return model;
        }
        catch (Exception e)
        {
            model.Dispose();
            throw e is ArgumentException
                ? new CheckpointException($"the sidecar's pruning state does not fit {config.Name}: {e.Message}", e)
                : e;
        }
    }

    /// <summary>
    /// A new model with <paramref name="model"/>'s configuration, block forms and weights on
    /// <paramref name="device"/>, in <paramref name="model"/>'s train/eval mode; the caller disposes it.
    /// </summary>
    /// <exception cref="NotSupportedException">A block has no pruning rule (its form cannot be recorded).</exception>
    public static ImageClassifier Copy(ImageClassifier model, Device device)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(device);
        var copy = Create(model.Config, Describe(model), device);
        try
        {
            using var scope = NewDisposeScope();
            StateDict.LoadInto(copy, model.state_dict(), model.Config.Name);
            copy.train(model.training);
            return copy;
        }
        catch
        {
            copy.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <paramref name="meta"/> (or a new sidecar) with <paramref name="model"/>'s pruning state under
    /// <see cref="ExtraKey"/>, or without that key when every block is original. The given sidecar is not modified.
    /// </summary>
    public static CheckpointMeta Describe(ImageClassifier model, CheckpointMeta? meta = null)
    {
        var state = PruningState.Of(model);
        var extra = meta?.Extra?.DeepClone().AsObject() ?? [];
        extra.Remove(ExtraKey);
        if (!state.IsEmpty)
        {
            extra[ExtraKey] = JsonSerializer.SerializeToNode(state);
        }
        return (meta ?? new CheckpointMeta()) with { Extra = extra.Count > 0 ? extra : null };
    }
}
