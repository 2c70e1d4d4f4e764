using System.Reflection;
using System.Text.Json;
using Spectre.Console;
using Updp.Checkpoints;
using Updp.Cli;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using Updp.Tests.Pruning;

namespace Updp.Tests.Cli;

[CollectionDefinition(nameof(ConsoleCollection), DisableParallelization = true)]
public sealed class ConsoleCollection;

/// <summary>The tool run in-process, as a user runs it; these tests redirect the console, so they run alone.</summary>
[Collection(nameof(ConsoleCollection))]
public partial class CliTests
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        Console.SetOut(stdout);
        Console.SetError(stderr);
        // Spectre.Console keeps the writer it first saw; point it at this run's.
        var oldAnsi = AnsiConsole.Console;
        AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(stdout) });
        try
        {
            var code = UpdpCli.Run(args);
            return (code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
            AnsiConsole.Console = oldAnsi;
        }
    }

    [Fact]
    public void PredictTensorOnAPyTorchStateDictReproducesPyTorchsLogits()
    {
        using var dir = new TempDir();
        var io = Path.Combine(Fixtures, "convnext_atto_io.safetensors");
        var outPath = dir.File("pred.json");
        var (code, _, err) = Run("predict", "--checkpoint", Path.Combine(Fixtures, "convnext_atto_convmlp.pt"), "--model", "convnext_atto",
            "--tensor", io, "--out", outPath);
        Assert.True(code == 0, err);

        var expected = StateDict.Read(io)["logits_convmlp"];
        using var doc = JsonDocument.Parse(File.ReadAllText(outPath));
        var predictions = doc.RootElement.GetProperty("predictions");
        Assert.Equal(expected.shape[0], predictions.GetArrayLength());
        for (var i = 0; i < expected.shape[0]; i++)
        {
            var logits = predictions[i].GetProperty("logits").EnumerateArray().Select(e => e.GetSingle()).ToArray();
            var want = expected[i].data<float>().ToArray();
            Assert.Equal(want.Length, logits.Length);
            for (var j = 0; j < want.Length; j++)
            {
                Assert.True(Math.Abs(want[j] - logits[j]) <= 1e-4, $"image {i} class {j}: {logits[j]} vs PyTorch {want[j]}");
            }
            var top = predictions[i].GetProperty("top");
            Assert.Equal(5, top.GetArrayLength());
            Assert.Equal(Array.IndexOf(want, want.Max()).ToString(), top[0].GetProperty("class").GetString());
        }
    }

    [Fact]
    public void VersionPrintsTheVersionOfTheBuildWithoutACommitSuffix()
    {
        var (code, stdout, err) = Run("--version");

        Assert.True(code == 0, err);
        // The test assembly is built with the same Version (Directory.Build.props) as the tool and its packages.
        var expected = typeof(CliTests).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.Equal(expected + Environment.NewLine, stdout);
        Assert.Equal(expected, UpdpInfo.Version);
        Assert.Matches(@"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$", expected);
    }

    [Fact]
    public void InfoJsonListsBlocksWithTheTotals()
    {
        var (code, stdout, err) = Run("info", "--model", "convnext_atto", "--input-size", "32", "--in-chans", "1", "--num-classes", "10", "--json");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(stdout);
        var blocks = doc.RootElement.GetProperty("blocks");
        Assert.Equal(12, blocks.GetArrayLength());
        Assert.Equal(Enumerable.Range(0, 12), blocks.EnumerateArray().Select(b => b.GetProperty("index").GetInt32()));
        Assert.True(doc.RootElement.GetProperty("params").GetInt64() > blocks.EnumerateArray().Sum(b => b.GetProperty("params").GetInt64()));
        Assert.True(doc.RootElement.GetProperty("macs").GetInt64() > 0);
    }

    [Fact]
    public void TrainThenEvalReportTheSameTop1()
    {
        using var dir = new TempDir();
        var run = dir.File("run");
        var (code, _, err) = Run("train", "--model", "convnext_atto", "--data", "fashion-mnist", "--epochs", "1", "--out", run,
            "--train-limit", "640", "--val-size", "200", "--stem-stride", "4", "--batch-size", "64");
        Assert.True(code == 0, err);
        using var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json")));
        var top1 = metrics.RootElement.GetProperty("top1").GetDouble();

        (code, var stdout, err) = Run("eval", "--checkpoint", Path.Combine(run, "model.safetensors"), "--data", "fashion-mnist", "--json");
        Assert.True(code == 0, err);
        using var eval = JsonDocument.Parse(stdout);
        Assert.Equal(top1, eval.RootElement.GetProperty("top1").GetDouble());
        Assert.Equal(10000, eval.RootElement.GetProperty("images").GetInt32());
    }

    [Fact]
    public void MergeWritesAVerifiedSmallerModelThatTheOtherVerbsLoad()
    {
        using var dir = new TempDir();
        var pruned = dir.File("pruned.safetensors");
        long paramsBefore;
        using (var model = PruningTestSupport.Atto(seed: 3))
        {
            PruningTestSupport.Prune(model, [3, 5, 8], lambda: 1, seed: 3);
            paramsBefore = ModelProfiler.CountParameters(model);
            var meta = new CheckpointMeta { Classes = DatasetCatalog.FashionMnistClassNames, Preprocessing = new Preprocessing(28, 32, 0.286f, 0.353f) };
            Checkpoint.Save(model, pruned, PrunedModels.Describe(model, meta));
        }

        var merged = dir.File("merged.safetensors");
        var (code, _, err) = Run("merge", "--checkpoint", pruned, "--out", merged, "--check-images", "64");
        Assert.True(code == 0, err);

        var meta2 = Checkpoint.ReadMeta(merged)!;
        Assert.InRange(meta2.Metrics["merge_max_abs_diff"], 0, meta2.Metrics["merge_tolerance"]);
        Assert.Equal([3, 5, 8], PruningState.FromMeta(meta2)!.Merged);

        (code, var stdout, err) = Run("info", "--checkpoint", merged, "--input-size", "32", "--json");
        Assert.True(code == 0, err);
        using var info = JsonDocument.Parse(stdout);
        Assert.True(info.RootElement.GetProperty("params").GetInt64() < paramsBefore);

        // A checkpoint with nothing to merge is refused and nothing is written.
        (code, _, err) = Run("merge", "--checkpoint", merged, "--out", dir.File("again.safetensors"));
        Assert.Equal(2, code);
        Assert.Contains("no fully pruned", err);
        Assert.False(File.Exists(dir.File("again.safetensors")));
    }

    [Theory]
    [InlineData("eval --checkpoint /nonexistent/model.safetensors", "/nonexistent/model.safetensors")]
    [InlineData("info --model convnext_nope", "convnext_nope")]
    [InlineData("bench --model convnext_atto --batch 0,x", "'0' is not a positive integer")]
    [InlineData("train --model convnext_atto --data fashion-mnist", "--out")]
    [InlineData("eval --checkpoint FIXTURE --batch-size abc", "abc")]
    [InlineData("predict --checkpoint /nonexistent/m.safetensors", "--checkpoint: '/nonexistent/m.safetensors' does not exist")]
    [InlineData("eval --checkpoint FIXTURE --data fashion-mnist", "--model")]
    [InlineData("train --model convnext_atto --data /nonexistent-data --out OUT", "/nonexistent-data")]
    public void BadInputGetsOneClearLineAndExitCode2(string args, string mentioned)
    {
        using var dir = new TempDir();
        var argv = args.Split(' ')
            .Select(a => a == "FIXTURE" ? Path.Combine(Fixtures, "convnext_atto_convmlp.pt") : a == "OUT" ? dir.File("out") : a).ToArray();
        var (code, _, err) = Run(argv);
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", err.TrimStart());
        Assert.Contains(mentioned, err.Replace("\n", "", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", err);
        Assert.False(File.Exists(dir.File("out/model.safetensors")));
    }
}
