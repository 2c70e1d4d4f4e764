using Updp.Checkpoints;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Tests.Checkpoints;

public class TransferTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void AThousandClassRgbStateDictFineTunesToTenGrayClasses()
    {
        // A bare state dict in timm's names, as timm saves an ImageNet convnext_atto.
        using var source = ModelRegistry.Create("convnext_atto", numClasses: 1000, inChans: 3);
        var path = _dir.File("convnext_atto_in1k.safetensors");
        using (var stream = File.Create(path))
        {
            Safetensors.Write(stream, source.state_dict(), metadata: null);
        }

        var transfer = Checkpoint.LoadForTransfer(path, "convnext_atto", numClasses: 10, inChans: 1);
        using var model = transfer.Model;

        Assert.Equal(1000, transfer.Source.NumClasses);
        Assert.Equal(3, transfer.Source.InChans);
        Assert.Equal((10L, 1L), (model.Config.NumClasses, model.Config.InChans));
        var stem = transfer.Adapted.Single();
        Assert.Equal(["head.fc.bias", "head.fc.weight"], transfer.Replaced.Except(transfer.Adapted).Order(StringComparer.Ordinal));
        var target = model.state_dict();
        var original = source.state_dict();
        using (var expected = original[stem].sum(1, keepdim: true))
        {
            Assert.True(target[stem].allclose(expected, rtol: 0, atol: 1e-6), "the stem is not the sum over RGB");
        }
        Assert.Equal([10L, 320], target["head.fc.weight"].shape);
        foreach (var (name, tensor) in target.Where(kv => !transfer.Replaced.Contains(kv.Key)))
        {
            Assert.True(tensor.allclose(original[name], rtol: 0, atol: 0), $"{name} was not loaded as it is");
        }
    }

    [Fact]
    public void AOneChannelPyTorchCheckpointTransfersToThreeChannelsByRepeatingAThird()
    {
        var fixture = TestSupport.Fixture(TestSupport.ConvMlpFixture);
        using var source = Checkpoint.Load(fixture, "convnext_atto").Model;

        var transfer = Checkpoint.LoadForTransfer(fixture, "convnext_atto", numClasses: 3, inChans: 3);
        using var model = transfer.Model;

        var stem = transfer.Adapted.Single();
        var one = source.state_dict()[stem];
        using var expected = one.repeat(1, 3, 1, 1).div(3);
        Assert.True(model.state_dict()[stem].allclose(expected, rtol: 0, atol: 1e-7));
        Assert.Equal(3L, model.Config.NumClasses);

        // A gray image seen as R = G = B gets the stem response the one-channel model gave it.
        using var gray = randn(2, 1, 32, 32, generator: new Generator(3));
        using var rgb = gray.repeat(1, 3, 1, 1);
        using var a = nn.functional.conv2d(gray, one, strides: [2, 2]);
        using var b = nn.functional.conv2d(rgb, model.state_dict()[stem], strides: [2, 2]);
        Assert.True(a.allclose(b, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void TensorsOtherThanHeadAndStemMustStillFit()
    {
        using var other = ModelRegistry.Create("convnext_femto", numClasses: 1000, inChans: 3);
        var path = _dir.File("femto.safetensors");
        using (var stream = File.Create(path))
        {
            Safetensors.Write(stream, other.state_dict(), metadata: null);
        }

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.LoadForTransfer(path, "convnext_atto", 10, 3));
        Assert.Contains("femto.safetensors", e.Message);
    }
}
