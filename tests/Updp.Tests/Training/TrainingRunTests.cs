using System.Text.Json;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Training;

namespace Updp.Tests.Training;

/// <summary>libtorch's default random generator is global to the process; tests that compare two seeded runs run alone.</summary>
[CollectionDefinition(nameof(GlobalRandomCollection), DisableParallelization = true)]
public sealed class GlobalRandomCollection;

/// <summary>Short real training runs on slices of Fashion-MNIST.</summary>
[Collection(nameof(GlobalRandomCollection))]
public class TrainingRunTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("updp-train-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private TrainRunOptions Options(string name, int epochs) => new()
    {
        ModelName = "convnext_atto",
        Data = "fashion-mnist",
        OutDir = Path.Combine(_dir, name),
        StemStride = 4,
        TrainLimit = 2048,
        ValidationCount = 500,
        Train = new TrainOptions { Epochs = epochs, BatchSize = 64, LearningRate = 3e-3, WarmupEpochs = 0.5, Seed = 7 },
    };

    [Fact]
    public void ShortRunBeatsChanceAndWritesItsFiles()
    {
        var options = Options("short", epochs: 2);
        var metrics = TrainingRun.Run(options);

        Assert.True(metrics.Top1 > 0.55, $"test top-1 {metrics.Top1} after 2 short epochs; chance is 0.10");
        Assert.Equal(2, metrics.Epochs);
        Assert.Equal(2048, metrics.TrainImages);
        Assert.True(metrics.TrainSeconds > 0);

        foreach (var file in new[] { "model.safetensors", "model.json", "metrics.json", "last.safetensors", "train_state.json" })
        {
            Assert.True(File.Exists(Path.Combine(options.OutDir, file)), $"{file} missing");
        }
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(options.OutDir, "metrics.json")));
        foreach (var key in new[] { "top1", "val_top1", "params", "macs", "epochs", "train_seconds" })
        {
            Assert.True(json.RootElement.TryGetProperty(key, out _), $"metrics.json lacks {key}");
        }
        Assert.Equal(metrics.Top1, json.RootElement.GetProperty("top1").GetDouble());

        // The saved best model, evaluated again, scores what metrics.json says.
        var loaded = Checkpoint.Load(Path.Combine(options.OutDir, "model.safetensors"));
        using var model = loaded.Model;
        Assert.NotNull(loaded.Meta?.Preprocessing);
        var splits = DatasetCatalog.Resolve("fashion-mnist").LoadSplits(500, 7);
        var again = Evaluator.Evaluate(model, TrainingRun.EvalLoader(splits.Test, loaded.Meta!.Preprocessing!).Epoch(0));
        Assert.Equal(metrics.Top1, again.Top1);
    }

    [Fact]
    public void ResumedRunEndsWhereAnUninterruptedOneDoes()
    {
        var straight = TrainingRun.Run(Options("straight", epochs: 2) with { TrainLimit = 768 });

        var interrupted = Options("interrupted", epochs: 2) with { TrainLimit = 768 };
        using (var cancel = new CancellationTokenSource())
        {
            Assert.Throws<OperationCanceledException>(() => TrainingRun.Run(interrupted, epochDone: _ => cancel.Cancel(), cancellation: cancel.Token));
        }
        Assert.False(File.Exists(Path.Combine(interrupted.OutDir, "metrics.json")));
        var resumed = TrainingRun.Run(interrupted with { Resume = true });

        Assert.Equal(2, resumed.History.Count);
        Assert.Equal(straight.History.Select(e => e.ValTop1), resumed.History.Select(e => e.ValTop1));
        Assert.Equal(straight.History[1].TrainLoss, resumed.History[1].TrainLoss, 5);
        Assert.Equal(straight.Top1, resumed.Top1);
    }
}
