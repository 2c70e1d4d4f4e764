using Updp.Export;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Tests.Export;

/// <summary>One block exported on its own, as the ONNX Runtime latency table times it (docs/METHOD.md#latency-budget).</summary>
public class ModuleOnnxExportTests
{
    [Theory]
    [InlineData("mobilenetv2_050", 4)]  // a residual block: the dropped form is the identity
    [InlineData("convnext_atto", 5)]
    public void ABlockAndItsDroppedFormRunInOnnxRuntimeAsInTorchSharp(string name, int index)
    {
        manual_seed(3);
        using var model = ModelRegistry.Create(ModelConfig.SmallInput(name));
        model.eval();
        var block = (nn.Module<Tensor, Tensor>)model.Blocks[index].Module;
        using var x = BlockLatencyInput(model, index, batch: 2);

        var (bytes, parity) = OnnxExporter.ExportModuleToMemory(block, model.Blocks[index].Path, x, 32);

        Assert.True(parity.RelativeDiff < 1e-4, $"{parity.RelativeDiff}");
        using var session = OnnxRuntimeModel.Load(bytes, 1);
        // The batch dimension is symbolic: another batch runs too.
        using var three = randn([3, .. x.shape.Skip(1)], generator: new Generator(1));
        using var expected = block.call(three);
        using var actual = session.Run(three);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True((expected - actual).abs().max().item<float>() < 1e-3);

        Assert.Null(model.CannotDrop(index));
        var dropped = BlockRules.For(block).Drop(block);
        var (droppedBytes, droppedParity) = OnnxExporter.ExportModuleToMemory(dropped, model.Blocks[index].Path, x, 32);
        Assert.True(droppedParity.RelativeDiff < 1e-4, $"{droppedParity.RelativeDiff}");
        Assert.True(droppedBytes.Length < bytes.Length);
    }

    // The input the block gets in the whole model at this batch, captured by a forward hook.
    private static Tensor BlockLatencyInput(ImageClassifier model, int index, int batch)
    {
        Tensor? captured = null;
        var block = (nn.Module<Tensor, Tensor>)model.Blocks[index].Module;
        var hook = block.register_forward_hook((_, input, output) =>
        {
            captured ??= input.detach().clone().DetachFromDisposeScope();
            return output;
        });
        using var _ = no_grad();
        using var x = randn(batch, model.Config.InChans, 32, 32, generator: new Generator(0));
        model.call(x).Dispose();
        hook.remove();
        return captured ?? throw new InvalidOperationException("the block did not run");
    }
}
