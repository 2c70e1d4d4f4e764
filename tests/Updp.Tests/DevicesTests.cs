using TorchSharp;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Tests;

public class DevicesTests
{
    [Theory]
    [InlineData("cpu", DeviceType.CPU, -1)]
    [InlineData(" CPU ", DeviceType.CPU, -1)]
    [InlineData("cuda", DeviceType.CUDA, 0)]
    [InlineData("cuda:1", DeviceType.CUDA, 1)]
    public void ParseReadsCpuCudaAndCudaN(string text, DeviceType type, int index)
    {
        var device = Devices.Parse(text);
        Assert.Equal(type, device.type);
        Assert.Equal(index, device.index);
        Assert.Equal(Devices.Name(device), Devices.Name(Devices.Parse(Devices.Name(device))));
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("")]
    public void ParseRefusesAnythingElseNamingIt(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => Devices.Parse(text));
        Assert.Contains($"'{text}'", e.Message, StringComparison.Ordinal);
        Assert.Contains("cpu, cuda or cuda:N", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RequireAcceptsTheCpuAndRefusesCudaOnTheCpuPackage()
    {
        Assert.Equal(DeviceType.CPU, Devices.Require(Devices.Cpu).type);
        Assert.False(cuda.is_available(), "the repository builds against the CPU libtorch package (TorchSharp-cpu); this test expects no CUDA device");
        var e = Assert.Throws<ArgumentException>(() => Devices.Require(Devices.Parse("cuda"), "--device cuda"));
        Assert.Equal("--device cuda: TorchSharp reports no CUDA device (this build uses the CPU libtorch package; see docs/DEVICES.md)", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        e = Assert.Throws<ArgumentException>(() => Devices.Require(Devices.Parse("cuda:2")));
        Assert.StartsWith("cuda:2: TorchSharp reports no CUDA device", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void OnTheCpuTheHelpersHandBackWhatTheyAreGiven()
    {
        using var scope = NewDisposeScope();
        var x = randn(2, 3);
        Assert.Same(x, x.OnDevice(Devices.Cpu));
        Assert.Same(x, x.MovedTo(Devices.Cpu));
        Assert.False(x.IsInvalid);
        Assert.True(Devices.IsOn(x, Devices.Cpu));
        Assert.False(Devices.IsOn(x, Devices.Parse("cuda")));

        using var model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto"));
        var parameters = model.parameters().ToList();
        Assert.Same(model, model.MoveTo(Devices.Cpu));
        Assert.Equal(DeviceType.CPU, Devices.Of(model).type);
        // The same tensors: a move to where they are copies nothing, so shared weights stay shared.
        Assert.All(model.parameters().Zip(parameters), p => Assert.Same(p.Second, p.First));
    }

    [Fact]
    public void AModuleWithoutTensorsIsOnTheCpu()
    {
        using var identity = nn.Identity();
        Assert.Equal(DeviceType.CPU, Devices.Of(identity).type);
    }

    [Fact]
    public void TheFastPathSwitchIsPerThreadAndNests()
    {
        using var scope = NewDisposeScope();
        var x = zeros(1);
        Assert.True(CpuFastPaths.Apply(x));
        using (CpuFastPaths.UsePlainLibtorch())
        {
            Assert.False(CpuFastPaths.Apply(x));
            var other = true;
            var thread = new Thread(() => other = CpuFastPaths.Disabled);
            thread.Start();
            thread.Join();
            Assert.False(other, "another thread keeps its fast paths");
            using (CpuFastPaths.UsePlainLibtorch())
            {
                Assert.True(CpuFastPaths.Disabled);
            }
            Assert.True(CpuFastPaths.Disabled);
        }
        Assert.False(CpuFastPaths.Disabled);
        Assert.True(CpuFastPaths.Apply(x));
    }
}
