using TorchSharp;
using Updp.Models;
using Updp.Models.ConvNeXt;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;
using static Updp.Tests.Pruning.PruningTestSupport;

namespace Updp.Tests.Pruning;

public class BlockFormTests
{
    private static List<string> Names(nn.Module m) => m.named_parameters().Select(p => p.name).ToList();

    private static List<string> StateNames(nn.Module m) => m.state_dict().Keys.ToList();

    [Fact]
    public void ReplacedBlockTakesThePlaceAndPrefixOfTheOldOne()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(1);
        var before = Names(model);
        var old = model.Blocks[1].Module;
        var replacement = new DroppedBlock();

        var returned = model.ReplaceBlock(1, replacement);

        Assert.Same(old, returned);
        Assert.Same(replacement, model.Blocks[1].Module);
        Assert.Equal("stages.0.blocks.1", model.Blocks[1].Path);
        Assert.Equal(before.Where(n => !n.StartsWith("stages.0.blocks.1.", StringComparison.Ordinal)), Names(model));
        Assert.DoesNotContain(StateNames(model), n => n.StartsWith("stages.0.blocks.1.", StringComparison.Ordinal));

        // Back again: the same names, in the same order, and the same tensors.
        model.ReplaceBlock(1, (nn.Module<Tensor, Tensor>)old);
        Assert.Equal(before, Names(model));
        var conv = model.named_parameters().Single(p => p.name == "stages.0.blocks.1.conv_dw.weight").parameter;
        Assert.Same(((ConvNeXtBlock)old).ConvDw.Weight, conv);
    }

    [Fact]
    public void PruningAddsTheBatchNormUnderTheBlocksPrefixInPlace()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(2);
        var before = Names(model);
        var beforeState = StateNames(model);

        model.Prune(2);

        var after = Names(model);
        var at = before.IndexOf("stages.1.blocks.0.norm.bias") + 1;
        var expected = before.Take(at).Concat(["stages.1.blocks.0.bn.weight", "stages.1.blocks.0.bn.bias"]).Concat(before.Skip(at)).ToList();
        Assert.True(at > 0);
        Assert.Equal(expected, after);
        // weight, bias, running_mean, running_var, num_batches_tracked
        Assert.Equal(beforeState.Count + 5, StateNames(model).Count);
        Assert.Contains("stages.1.blocks.0.bn.running_var", StateNames(model));
        Assert.Equal(BlockForm.Pruned, model.FormOf(2));
        Assert.Equal(BlockForm.Original, model.FormOf(3));
    }

    [Fact]
    public void ReplacingInAnEvalModelPutsTheNewBlockInEvalMode()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(3);
        model.eval();
        var pruned = (nn.Module)model.Prune(0);
        Assert.False(pruned.training);
        Assert.All(pruned.modules(), m => Assert.False(m.training));
    }

    [Fact]
    public void PruningIsIdempotentAndKeepsLambda()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(4);
        var first = model.Prune(2);
        first.Lambda = 0.25;
        var second = model.Prune(2);
        Assert.Same(first, second);
        Assert.Equal(0.25, second.Lambda);
        Assert.Equal([2], model.PrunedBlocks().Select(p => p.Block.Index));
    }

    [Fact]
    public void DroppedBlockIsTheIdentityAndCannotBePruned()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(5);
        model.eval();
        model.Drop(10);
        Assert.Equal(BlockForm.Dropped, model.FormOf(10));
        var x = randn(2, 320, 2, 2);
        Assert.Same(x, ((nn.Module<Tensor, Tensor>)model.Blocks[10].Module).call(x));
        var e = Assert.Throws<InvalidOperationException>(() => model.Prune(10));
        Assert.Contains("block 10 (stages.3.blocks.0) is dropped", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Prune(12));
    }

    [Fact]
    public void PrunedModelAtLambdaZeroComputesTheOriginalModel()
    {
        using var scope = NewDisposeScope();
        using var model = Atto(6);
        model.eval();
        var x = Input(6);
        var expected = model.call(x);
        foreach (var b in model.Blocks)
        {
            model.Prune(b.Index);
        }
        Assert.True(Checkpoints.TestSupport.Identical(expected, model.call(x)));
    }

    [Fact]
    public void ModelBuiltAndPrunedInsideADisposeScopeOutlivesIt()
    {
        ImageClassifier model;
        using (NewDisposeScope())
        {
            model = Atto(7);
            Prune(model, [0, 5], 1, seed: 7);
            Merger.MergeAll(model, [Input(7)]);
            model.Prune(1).Lambda = 0.5;
        }
        using (model)
        {
            using var scope = NewDisposeScope();
            Assert.Equal([4L, 10L], model.call(Input(8)).shape);
            Assert.All(model.parameters(), p => Assert.False(p.IsInvalid));
        }
    }
}
