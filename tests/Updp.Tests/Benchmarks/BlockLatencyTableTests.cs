using Updp.Benchmarks;
using Updp.Models;
using Updp.Pruning;

namespace Updp.Tests.Benchmarks;

public class BlockLatencyTableTests
{
    private static BlockLatencyTable Table(params double[] savings) => new()
    {
        Config = ModelConfig.SmallInput("convnext_atto"),
        Resolution = 32,
        Batch = 1,
        Threads = 1,
        Machine = "test",
        ModelMs = 50,
        AllMergedMs = 40,
        Blocks = [.. savings.Select((s, i) => new BlockLatency(i, 5 + s, 5))],
    };

    [Theory]
    [InlineData("\"merged_ms\": 5", "\"merged_ms\": -5", "block 0: original_ms 6 and merged_ms -5 must be positive finite times")]
    [InlineData("\"original_ms\": 6", "\"original_ms\": 1e400", "block 0: original_ms Infinity")]
    [InlineData("\"model_ms\": 50", "\"model_ms\": 0", "model_ms 0 and all_merged_ms 40 must be positive finite times")]
    [InlineData("\"index\": 1", "\"index\": 0", "block 0 is listed 2 times")]
    [InlineData("\"batch\": 1", "\"batch\": -1", "batch and threads must be ≥ 1")]
    public void ATableWithImpossibleTimesOrBlocksIsRefusedNamingWhat(string original, string replacement, string expected)
    {
        using var dir = new TempDir();
        var path = dir.File("table.json");
        BlockLatencyTable.Save(Table(1, 2), path);
        Assert.Equal(2, BlockLatencyTable.Load(path).Blocks.Count);
        var json = File.ReadAllText(path);
        Assert.Contains(original, json);
        File.WriteAllText(path, json.Replace(original, replacement, StringComparison.Ordinal));

        var e = Assert.Throws<InvalidDataException>(() => BlockLatencyTable.Load(path));

        Assert.Contains($"latency table '{path}' is damaged: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void ACacheFolderThatCannotBeCreatedIsReportedBeforeMeasuring()
    {
        using var dir = new TempDir();
        var file = dir.Write("cache", [1]);
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var e = Assert.Throws<IOException>(() =>
            BlockLatencyTable.LoadOrMeasure(Path.Combine(file, "latency", "t.json"), ModelConfig.SmallInput("convnext_atto"), 32, 1, out _, runs: 50));

        Assert.Contains($"cannot cache the latency table in '{Path.Combine(file, "latency")}'", e.Message);
        Assert.Contains("UPDP_CACHE", e.Message);
        // 50 timed runs of every block would take far longer.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"took {clock.Elapsed}");
    }

    [Fact]
    public void PredictionSubtractsTheSavingsOfTheMergedBlocks()
    {
        var table = Table(1, 2, 4, -0.5);
        Assert.Equal(50, table.Predict([]));
        Assert.Equal(50 - 1 - 4, table.Predict([0, 2]), 9);
        Assert.Equal(50 + 0.5, table.Predict([3]), 9);
        Assert.Contains("block 7", Assert.Throws<ArgumentException>(() => table.Predict([7])).Message);
    }

    [Fact]
    public void FewestBlocksTakesTheLargestSavingsFirstAndNeverCountsALoss()
    {
        var table = Table(1, 2, 4, -0.5);
        Assert.Equal(0, table.FewestBlocksFor(50, [0, 1, 2, 3]));
        Assert.Equal(1, table.FewestBlocksFor(46, [0, 1, 2, 3]));
        Assert.Equal(2, table.FewestBlocksFor(44, [0, 1, 2, 3]));
        Assert.Equal(3, table.FewestBlocksFor(43, [0, 1, 2, 3]));
        Assert.Null(table.FewestBlocksFor(42.9, [0, 1, 2, 3]));
        Assert.Null(table.FewestBlocksFor(45, [0, 1]));
        var budget = new LatencyBudget(table, 44);
        Assert.Equal(2, budget.FewestBlocks([0, 1, 2, 3]));
        Assert.True(budget.Fits([1, 2]) && !budget.Fits([0, 2]));
        Assert.Contains("already fits", Assert.Throws<ArgumentException>(() => new LatencyBudget(table, 60).FewestBlocks([0])).Message);
    }

    [Fact]
    public void MeasuredTableIsCachedForTheSameSettingsAndRemeasuredForOthers()
    {
        using var dir = new TempDir();
        var path = dir.File("cache/atto.json");
        var config = ModelConfig.SmallInput("convnext_atto") with { StemStride = 4 };
        var table = BlockLatencyTable.LoadOrMeasure(path, config, 32, batch: 2, out var measured, runs: 2);
        Assert.True(measured);
        Assert.Equal(12, table.Blocks.Count);
        Assert.All(table.Blocks, b => Assert.True(b.OriginalMs > 0 && b.MergedMs > 0));
        Assert.True(table.ModelMs > 0 && table.AllMergedMs > 0);
        Assert.True(table.IsFor(config, 32, 2, table.Threads));

        var again = BlockLatencyTable.LoadOrMeasure(path, config, 32, batch: 2, out measured, runs: 2);
        Assert.False(measured);
        Assert.Equal(table.ModelMs, again.ModelMs);
        Assert.Equal(table.Blocks, again.Blocks);

        BlockLatencyTable.LoadOrMeasure(path, config, 32, batch: 3, out measured, runs: 2);
        Assert.True(measured);
        Assert.Equal(3, BlockLatencyTable.Load(path).Batch);

        File.WriteAllText(path, "{ not json");
        Assert.Contains(path, Assert.Throws<InvalidDataException>(() => BlockLatencyTable.Load(path)).Message);
    }

    [Fact]
    public void ATableTimesTheDroppedFormOfEveryBlockThatCanBeDropped()
    {
        using var dir = new TempDir();
        var path = dir.File("cache/mnv2.json");
        var config = ModelConfig.SmallInput("mobilenetv2_050");
        var table = BlockLatencyTable.LoadOrMeasure(path, config, 32, batch: 1, out _, runs: 3);

        // MobileNetV2's residual blocks (docs/METHOD.md#which-blocks-can-be-dropped); their dropped form is the identity.
        Assert.True(table.HasDroppedForms);
        Assert.Equal([2, 4, 5, 7, 8, 9, 11, 12, 14, 15], table.Blocks.Where(b => b.DroppedMs is not null).Select(b => b.Index));
        Assert.All(table.Blocks.Where(b => b.DroppedMs is not null), b => Assert.True(b.DroppedMs < b.OriginalMs, $"block {b.Index}"));

        // A table from before dropped forms serves a merge-only search and is measured again for a mixed one.
        BlockLatencyTable.Save(table with { HasDroppedForms = false, Blocks = [.. table.Blocks.Select(b => b with { DroppedMs = null })] }, path);
        Assert.DoesNotContain("dropped_ms", File.ReadAllText(path), StringComparison.Ordinal);
        BlockLatencyTable.LoadOrMeasure(path, config, 32, 1, out var measured, runs: 3);
        Assert.False(measured);
        var again = BlockLatencyTable.LoadOrMeasure(path, config, 32, 1, out measured, runs: 3, needDropped: true);
        Assert.True(measured);
        Assert.True(again.HasDroppedForms);
    }

    [Fact]
    public void ATableIsForTheDeviceItWasMeasuredOn()
    {
        var cpu = Table(1, 2) with { Machine = BlockLatencyTable.ThisMachine() };
        var config = cpu.Config;
        Assert.Equal("cpu", cpu.Device);
        Assert.True(cpu.IsFor(config, 32, 1, 1));
        Assert.True(cpu.IsFor(config, 32, 1, 1, Devices.Cpu));
        Assert.False(cpu.IsFor(config, 32, 1, 1, Devices.Parse("cuda")));
        var gpu = cpu with { Device = "cuda:0" };
        Assert.True(gpu.IsFor(config, 32, 1, 1, Devices.Parse("cuda")));
        Assert.False(gpu.IsFor(config, 32, 1, 1));

        // A table written before devices existed (no "device" key) is a CPU table.
        using var dir = new TempDir();
        var path = dir.File("old.json");
        BlockLatencyTable.Save(cpu, path);
        File.WriteAllText(path, File.ReadAllText(path).Replace("\"device\": \"cpu\",", "", StringComparison.Ordinal));
        Assert.DoesNotContain("\"device\"", File.ReadAllText(path), StringComparison.Ordinal);
        Assert.True(BlockLatencyTable.Load(path).IsFor(config, 32, 1, 1));

        // The CPU keeps its file names; other devices get their own.
        var cpuPath = BlockLatencyTable.DefaultPath(config, 32, 1);
        Assert.Equal(cpuPath, BlockLatencyTable.DefaultPath(config, 32, 1, Devices.Cpu));
        Assert.DoesNotContain("cuda", cpuPath, StringComparison.Ordinal);
        Assert.EndsWith("-cuda1.json", BlockLatencyTable.DefaultPath(config, 32, 1, Devices.Parse("cuda:1")), StringComparison.Ordinal);
    }

    [Fact]
    public void AnOnnxRuntimeTableTimesEachBlockExportedOnItsOwnAndIsCachedApart()
    {
        using var dir = new TempDir();
        var path = dir.File("cache/atto-ort.json");
        var config = ModelConfig.SmallInput("convnext_atto") with { StemStride = 4 };

        var table = BlockLatencyTable.LoadOrMeasure(path, config, 32, batch: 1, out var measured, runs: 2, engine: InferenceEngine.OnnxRuntime);

        Assert.True(measured);
        Assert.Equal("onnxruntime", table.Engine);
        Assert.Equal("cpu", table.Device);
        Assert.True(table.HasDroppedForms);
        Assert.Equal(12, table.Blocks.Count);
        // Every ConvNeXt block keeps its shape, so each has a dropped form; all times are real ones.
        Assert.All(table.Blocks, b => Assert.True(b.OriginalMs > 0 && b.MergedMs > 0 && b.DroppedMs > 0, $"block {b.Index}"));
        Assert.True(table.ModelMs > 0 && table.AllMergedMs > 0);
        Assert.True(table.IsFor(config, 32, 1, table.Threads, engine: InferenceEngine.OnnxRuntime));
        Assert.False(table.IsFor(config, 32, 1, table.Threads));
        Assert.Contains("\"engine\": \"onnxruntime\"", File.ReadAllText(path), StringComparison.Ordinal);

        BlockLatencyTable.LoadOrMeasure(path, config, 32, batch: 1, out measured, runs: 2, engine: InferenceEngine.OnnxRuntime);
        Assert.False(measured);
        // The same file asked for TorchSharp is measured again, in TorchSharp.
        var torch = BlockLatencyTable.LoadOrMeasure(path, config, 32, batch: 1, out measured, runs: 2);
        Assert.True(measured);
        Assert.Equal("torchsharp", torch.Engine);

        // ONNX Runtime runs on the CPU here.
        Assert.Contains("ONNX Runtime", Assert.Throws<ArgumentException>(() =>
            BlockLatencyTable.Measure(config, 32, 1, runs: 1, device: Devices.Parse("cuda:0"), engine: InferenceEngine.OnnxRuntime)).Message);
    }
}
