using System.Text.Json.Nodes;
using TorchSharp;
using Updp.Checkpoints;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Pruning;

public class PruningCheckpointTests
{
    /// <summary>Blocks 3 and 7 merged, 1 pruned at λ=0.4, 5 pruned at λ=1, 10 dropped.</summary>
    private static ImageClassifier MixedModel(int seed)
    {
        var model = Atto(seed);
        Prune(model, [3, 7], 1, seed);
        Merger.MergeAll(model, [Input(seed)]);
        Prune(model, [1], 0.4, seed + 1);
        Prune(model, [5], 1, seed + 2);
        model.Drop(10);
        return model;
    }

    [Fact]
    public void StateDescribesEveryBlockForm()
    {
        using var scope = NewDisposeScope();
        using var model = MixedModel(1);
        var state = PruningState.Of(model);
        Assert.Equal(new Dictionary<int, double> { [1] = 0.4, [5] = 1 }, state.Pruned);
        Assert.Equal([3, 7], state.Merged);
        Assert.Equal([10], state.Dropped);
        Assert.True(PruningState.Of(Atto(2)).IsEmpty);
    }

    [Fact]
    public void CopyHasTheSameFormsAndWeightsButNoSharedTensors()
    {
        using var scope = NewDisposeScope();
        using var model = MixedModel(5);
        model.eval();
        using var copy = PrunedModels.Copy(model, Devices.Cpu);
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(PruningState.Of(model)), System.Text.Json.JsonSerializer.Serialize(PruningState.Of(copy)));
        Assert.False(copy.training);
        var x = Input(6);
        Assert.True(copy.call(x).eq(model.call(x)).all().item<bool>());

        // A change to the copy leaves the model alone.
        var original = model.state_dict();
        var copied = copy.state_dict();
        Assert.Equal(original.Keys, copied.Keys);
        using (no_grad())
        {
            copy.parameters().First().add_(1);
        }
        Assert.False(copy.call(x).eq(model.call(x)).all().item<bool>());
        Assert.Equal(Devices.Cpu.type, Devices.Of(copy).type);
    }

    [Fact]
    public void PrunedMergedAndDroppedModelSurvivesSaveAndLoad()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDir();
        using var model = MixedModel(3);
        model.eval();
        var x = Input(4);
        var expected = model.call(x);
        var path = dir.File("pruned.safetensors");

        Checkpoint.Save(model, path, PrunedModels.Describe(model, new CheckpointMeta { Epoch = 3 }));
        var loaded = Checkpoint.Load(path, options: PrunedModels.LoadOptions);

        using var m = loaded.Model;
        Assert.Equal(3, loaded.Meta!.Epoch);
        Assert.Equal(PruningState.Of(model), PruningState.Of(m), new StateComparer());
        Assert.Equal(0.4, ((IProgressiveBlock)m.Blocks[1].Module).Lambda);
        Assert.Equal(model.state_dict().Keys, m.state_dict().Keys);
        Assert.True(Checkpoints.TestSupport.Identical(expected, m.call(x)));
        // The sidecar holds the state as plain JSON.
        var sidecar = JsonNode.Parse(File.ReadAllText(Checkpoint.SidecarPath(path)))!;
        Assert.Equal(0.4, sidecar["extra"]!["pruning"]!["pruned"]!["1"]!.GetValue<double>());
        Assert.Equal("[3,7]", sidecar["extra"]!["pruning"]!["merged"]!.ToJsonString());
    }

    [Fact]
    public void WithoutThePruningHookAPrunedCheckpointDoesNotLoad()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDir();
        using var model = MixedModel(5);
        var path = dir.File("pruned.safetensors");
        Checkpoint.Save(model, path, PrunedModels.Describe(model));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("stages.0.blocks.1.bn.bias", e.Message);
    }

    [Fact]
    public void DescribeKeepsOtherExtrasAndDoesNotChangeTheGivenSidecar()
    {
        using var scope = NewDisposeScope();
        using var model = MixedModel(6);
        var meta = new CheckpointMeta { Extra = new JsonObject { ["other"] = 1, ["pruning"] = "stale" } };
        var described = PrunedModels.Describe(model, meta);
        Assert.Equal(1, described.Extra!["other"]!.GetValue<int>());
        Assert.Equal("stale", meta.Extra!["pruning"]!.GetValue<string>());
        Assert.NotNull(PruningState.FromMeta(described));

        using var plain = Atto(7);
        var none = PrunedModels.Describe(plain, meta);
        Assert.False(none.Extra!.ContainsKey("pruning"));
        Assert.Null(PrunedModels.Describe(plain).Extra);
    }

    [Theory]
    [InlineData("""{"merged": [12]}""", "out of range")]
    [InlineData("""{"pruned": {"2": 0.5}, "dropped": [2]}""", "more than once")]
    [InlineData("""{"pruned": {"2": 1.5}}""", "outside [0, 1]")]
    public void AStateThatDoesNotFitTheModelIsACheckpointError(string json, string expected)
    {
        var meta = new CheckpointMeta { Extra = new JsonObject { ["pruning"] = JsonNode.Parse(json) } };
        var e = Assert.Throws<CheckpointException>(() => PrunedModels.Create(ModelConfig.SmallInput("convnext_atto"), meta));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void ASidecarWithoutPruningStateGivesTheOriginalModel()
    {
        using var model = PrunedModels.Create(ModelConfig.SmallInput("convnext_atto"), new CheckpointMeta());
        Assert.True(PruningState.Of(model).IsEmpty);
        using var again = PrunedModels.Create(ModelConfig.SmallInput("convnext_atto"), null);
        Assert.True(PruningState.Of(again).IsEmpty);
    }

    private sealed class StateComparer : IEqualityComparer<PruningState>
    {
        public bool Equals(PruningState? a, PruningState? b) =>
            a is not null && b is not null
            && a.Pruned.OrderBy(p => p.Key).SequenceEqual(b.Pruned.OrderBy(p => p.Key))
            && a.Merged.SequenceEqual(b.Merged) && a.Dropped.SequenceEqual(b.Dropped);

        public int GetHashCode(PruningState s) => s.Merged.Count;
    }
}
