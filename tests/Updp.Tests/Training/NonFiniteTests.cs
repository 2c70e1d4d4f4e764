using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Tests.Data;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Tests.Training;

/// <summary>Non-finite numbers stop a run and are refused where they would be used; labels must name classes.</summary>
public class NonFiniteTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void ALossThatStaysNonFiniteStopsTrainingAndLeavesTheLastGoodCheckpointAsItWas()
    {
        var options = new TrainRunOptions
        {
            ModelName = "convnext_atto",
            Data = "fashion-mnist",
            OutDir = _dir.File("run"),
            InputSize = 32,
            Train = new TrainOptions { Epochs = 3, BatchSize = 8, MaxStepsPerEpoch = 4, WarmupEpochs = 0, Seed = 1 },
        };
        var data = TrainingRun.LoadData("fashion-mnist", new ValidationSplit(16, 0), trainLimit: 64);
        using var model = TrainingRun.CreateModel(options, data);
        var calls = 0;
        // Epoch 1 trains normally; from the second step of epoch 2 on the loss is NaN.
        var hooks = new TrainRunHooks
        {
            Loss = (logits, _, labels) =>
            {
                var loss = nn.functional.cross_entropy(logits, labels);
                return ++calls > 5 ? loss * double.NaN : loss;
            },
        };

        var e = Assert.Throws<TrainingDivergedException>(() => TrainingRun.Run(options, data, model, hooks));

        Assert.Equal((2, 4), (e.Epoch, e.Step));
        Assert.Equal(Path.Combine(options.OutDir, "last.safetensors"), e.LastGoodCheckpoint);
        Assert.Contains("not finite for 3 consecutive steps (epoch 2, step 4)", e.Message);
        // The last good checkpoint is epoch 1's and loads: its weights are finite.
        var last = Checkpoint.Load(e.LastGoodCheckpoint!, options: Updp.Pruning.Blocks.PrunedModels.LoadOptions);
        using (last.Model)
        {
            Assert.Equal(1, last.Meta!.Epoch);
        }
        Assert.Equal(1, RunDirectory.ReadJson<TrainState>(Path.Combine(options.OutDir, "train_state.json")).EpochsDone);
        Assert.False(File.Exists(Path.Combine(options.OutDir, "metrics.json")));
    }

    [Fact]
    public void ACheckpointWithNonFiniteWeightsIsRefusedNamingTheTensor()
    {
        var path = _dir.File("nan/model.safetensors");
        using (var model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto")))
        {
            using (no_grad())
            {
                model.state_dict()["head.fc.weight"][3, 5] = float.NaN;
            }
            Checkpoint.Save(model, path);
        }

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));

        Assert.Contains("'head.fc.weight' holds non-finite values", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void IdxLabelsThatSkipClassesAreRefused()
    {
        var dataset = _dir.File("stray");
        Directory.CreateDirectory(dataset);
        // Labels 0–9 and one stray 255: without the check, a 256-class model.
        _dir.Write("stray/train-images-idx3-ubyte", IdxBytes.Images(30, 4, 4));
        _dir.Write("stray/train-labels-idx1-ubyte", IdxBytes.Labels(30, i => (byte)(i == 17 ? 255 : i % 10)));
        _dir.Write("stray/t10k-images-idx3-ubyte", IdxBytes.Images(10, 4, 4));
        _dir.Write("stray/t10k-labels-idx1-ubyte", IdxBytes.Labels(10, i => (byte)i));

        var e = Assert.Throws<InvalidDataException>(() => DatasetCatalog.Resolve(dataset, null, _dir.Path).LoadSplits(validationCount: 5, seed: 0));

        Assert.Contains("labels up to 255 but none of class 10", e.Message);
    }
}
