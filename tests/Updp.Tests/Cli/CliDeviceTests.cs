using Updp.Checkpoints;
using static TorchSharp.torch;

namespace Updp.Tests.Cli;

/// <summary><c>--device</c> on the verbs that run models.</summary>
public partial class CliTests
{
    /// <summary>Each verb that runs models, with its required options, writing (if it got that far) below <c>{0}</c>.</summary>
    public static TheoryData<string> VerbsThatRunModels() => new()
    {
        "train --model convnext_atto --out {0}/train",
        "eval --checkpoint {1}",
        "predict --checkpoint {1} --tensor {1} --out {0}/predictions.json",
        "supernet --checkpoint {1} --max-pruned 1 --out {0}/supernet",
        "search --checkpoint {1} --blocks 1 --out {0}/search",
        "finetune --checkpoint {1} --pruned 1 --out {0}/finetune",
        "prune --checkpoint {1} --blocks 1 --out {0}/prune",
        "merge --checkpoint {1} --out {0}/merged.safetensors",
        "export --checkpoint {1} --onnx {0}/model.onnx",
        "bench --model convnext_atto --runs 1 --warmup 0",
        "demo --out {0}/demo --epochs 1",
    };

    [Theory]
    [MemberData(nameof(VerbsThatRunModels))]
    public void DeviceCudaOnTheCpuPackageIsOneLineAndExitCode2BeforeAnyWork(string verb)
    {
        Assert.False(cuda.is_available(), "the repository builds against the CPU libtorch package (TorchSharp-cpu); this test expects no CUDA device");
        using var dir = new TempDir();
        // An input that exists (the parser checks that first), but is no checkpoint: the device must be refused before it is read.
        using var inputs = new TempDir();
        var input = inputs.Write("model.safetensors", [1, 2, 3]);
        string[] args = [.. string.Format(System.Globalization.CultureInfo.InvariantCulture, verb, dir.Path, input).Split(' '), "--device", "cuda"];

        var (code, stdout, stderr) = Run(args);

        Assert.Equal(2, code);
        // The device is checked before the checkpoint is read or the data loaded: nothing printed or written.
        Assert.Equal(
            "error: --device cuda: TorchSharp reports no CUDA device (this build uses the CPU libtorch package; see docs/DEVICES.md)",
            stderr.TrimEnd('\n'));
        Assert.Equal("", stdout);
        Assert.Empty(dir.Files());
    }

    [Fact]
    public void ADeviceThatIsNoDeviceIsAnInputError()
    {
        using var inputs = new TempDir();
        var (code, stdout, stderr) = Run("eval", "--checkpoint", inputs.Write("model.safetensors", [1, 2, 3]), "--device", "gpu");
        Assert.Equal(2, code);
        Assert.Equal("error: --device 'gpu': expected cpu, cuda or cuda:N", stderr.TrimEnd('\n'));
        Assert.Equal("", stdout);
    }

    [Fact]
    public void DeviceCpuTrainsAndEvaluatesExactlyAsWithoutTheOption()
    {
        using var dir = new TempDir();
        string[] train = ["train", "--model", "convnext_atto", "--data", "fashion-mnist", "--train-limit", "512", "--val-size", "200",
            "--epochs", "1", "--max-steps", "4", "--batch-size", "64", "--seed", "3", "--threads", "1"];
        var (code, _, err) = Run([.. train, "--out", dir.File("default")]);
        Assert.True(code == 0, err);
        (code, _, err) = Run([.. train, "--out", dir.File("cpu"), "--device", "cpu"]);
        Assert.True(code == 0, err);

        AssertSameTensors(dir.File("default/model.safetensors"), dir.File("cpu/model.safetensors"));
        AssertSameTensors(dir.File("default/last.optimizer"), dir.File("cpu/last.optimizer"));

        string[] eval = ["eval", "--checkpoint", dir.File("default/model.safetensors"), "--data", "fashion-mnist", "--json"];
        (code, var withoutOption, err) = Run(eval);
        Assert.True(code == 0, err);
        (code, var withCpu, err) = Run([.. eval, "--device", "cpu"]);
        Assert.True(code == 0, err);
        Assert.Equal(withoutOption, withCpu);
        Assert.Contains("\"top1\"", withCpu, StringComparison.Ordinal);
    }

    [Fact]
    public void DeviceCpuTrainsTheSameSupernetAsWithoutTheOption()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        string[] supernet = ["supernet", "--checkpoint", baseline, "--epochs", "1", "--max-pruned", "2", "--distill", baseline, .. Quick];
        var (code, _, err) = Run([.. supernet, "--out", dir.File("default")]);
        Assert.True(code == 0, err);
        (code, _, err) = Run([.. supernet, "--out", dir.File("cpu"), "--device", "cpu"]);
        Assert.True(code == 0, err);
        AssertSameTensors(dir.File("default/supernet.safetensors"), dir.File("cpu/supernet.safetensors"));
    }

    // Bit for bit: the same names, shapes, types and values.
    private static void AssertSameTensors(string expectedPath, string actualPath)
    {
        var expected = StateDict.Read(expectedPath);
        var actual = StateDict.Read(actualPath);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        Assert.NotEmpty(expected);
        foreach (var (name, e) in expected)
        {
            var a = actual[name];
            Assert.Equal(e.dtype, a.dtype);
            Assert.Equal(e.shape, a.shape);
            Assert.True(e.eq(a).all().item<bool>(), $"{name} differs between {expectedPath} and {actualPath}");
        }
    }
}
