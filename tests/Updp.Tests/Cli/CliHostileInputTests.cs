using System.Diagnostics;
using System.Text.Json.Nodes;
using Updp.Checkpoints;

namespace Updp.Tests.Cli;

/// <summary>Cases of the hostile-input probe (issue 13): each refused with one line, exit 2, quickly, nothing written.</summary>
public partial class CliTests
{
    [Fact]
    public void ANamedPipeAsSidecarOrFileListIsRefusedWithoutBlocking()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var sidecar = Checkpoint.SidecarPath(baseline);
        File.Delete(sidecar);
        MakeFifo(sidecar);
        var list = dir.File("list.csv");
        MakeFifo(list);

        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.ReadMeta(baseline));
        Assert.Contains("not a regular file", e.Message);
        var (code, _, err) = Run("eval", "--checkpoint", dir.File("missing-sidecar.safetensors"), "--data", list);
        Assert.Equal(2, code);
        (code, _, err) = Run("train", "--model", "convnext_atto", "--data", list, "--out", dir.File("run"));
        Assert.Equal(2, code);
        Assert.Contains($"file list '{list}' is empty or not a regular file", err);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"took {clock.Elapsed}");
    }

    [Theory]
    [InlineData("num_classes", -1, "num_classes -1 is not from 1 to")]
    [InlineData("in_chans", 0, "in_chans 0 is not from 1 to")]
    [InlineData("stem_stride", 1000, "stem_stride 1000 is not from 1 to")]
    public void ASidecarWithAnImpossibleModelSettingIsRefusedNamingIt(string key, int value, string expected)
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var sidecar = Checkpoint.SidecarPath(baseline);
        var json = JsonNode.Parse(File.ReadAllText(sidecar))!;
        json["model"]![key] = value;
        File.WriteAllText(sidecar, json.ToJsonString());

        var (code, _, err) = Run("eval", "--checkpoint", baseline);

        Assert.Equal(2, code);
        Assert.Contains(expected, err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void DemoChecksItsBlocksBeforeTrainingTheBaseline()
    {
        using var dir = new TempDir();
        var clock = Stopwatch.StartNew();
        var (code, _, err) = Run("demo", "--blocks", "2,abc", "--out", dir.File("demo"));
        Assert.Equal(2, code);
        Assert.Contains("'abc' is not a block index", err);
        Assert.False(Directory.Exists(dir.File("demo/baseline")));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
    }

    private static void MakeFifo(string path)
    {
        using var mkfifo = Process.Start("mkfifo", [path]);
        mkfifo.WaitForExit();
        Assert.Equal(0, mkfifo.ExitCode);
    }
}
