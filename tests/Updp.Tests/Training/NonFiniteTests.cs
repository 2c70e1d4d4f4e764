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

    // A 3-epoch run of 4 steps each whose training calls listed in `bad` get NaN gradients under a
    // finite loss: sqrt(0·logits) adds 0 forward, and 0·∞ = NaN backward, in every gradient. Returns the
    // weights just before the first bad call and the model's weights when the next good call starts.
    private (TrainingDivergedException? Error, Dictionary<string, Tensor> Before, Dictionary<string, Tensor> After, TrainRunOptions Options) TrainWithNanGradients(params int[] bad)
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
        Dictionary<string, Tensor> Weights() => model.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone().DetachFromDisposeScope());
        var calls = 0;
        Dictionary<string, Tensor>? before = null, after = null;
        var hooks = new TrainRunHooks
        {
            Loss = (logits, _, labels) =>
            {
                var loss = nn.functional.cross_entropy(logits, labels);
                if (!bad.Contains(++calls))
                {
                    after ??= before is null ? null : Weights();
                    return loss;
                }
                before ??= Weights();
                return loss + (logits * 0).sqrt().sum();
            },
        };
        TrainingDivergedException? error = null;
        try
        {
            TrainingRun.Run(options, data, model, hooks);
        }
        catch (TrainingDivergedException e)
        {
            error = e;
        }
        return (error, before!, after ?? Weights(), options);
    }

    private static void AssertSameFiniteWeights(Dictionary<string, Tensor> before, Dictionary<string, Tensor> after)
    {
        Assert.Equal(before.Keys.Order(), after.Keys.Order());
        foreach (var (name, tensor) in after)
        {
            Assert.True(tensor.isfinite().all().item<bool>(), $"{name} is not finite");
            // An AdamW step would have made it NaN, or moved it by the weight decay at least.
            Assert.True(tensor.eq(before[name]).all().item<bool>(), $"{name} changed in a skipped step");
        }
        foreach (var tensor in before.Values.Concat(after.Values))
        {
            tensor.Dispose();
        }
    }

    [Fact]
    public void NonFiniteGradientsUnderAFiniteLossStopTrainingAfterThreeInARowWithNoUpdateFromThem()
    {
        var (e, before, after, options) = TrainWithNanGradients(6, 7, 8);

        Assert.NotNull(e);
        Assert.Equal((2, 4), (e.Epoch, e.Step));
        Assert.Contains("the gradient norm was not finite for 3 consecutive steps (epoch 2, step 4)", e.Message);
        Assert.Equal(Path.Combine(options.OutDir, "last.safetensors"), e.LastGoodCheckpoint);
        AssertSameFiniteWeights(before, after);
        Assert.False(File.Exists(Path.Combine(options.OutDir, "metrics.json")));
    }

    [Fact]
    public void FewerNonFiniteGradientsInARowThanTheLimitAreSkippedAndTrainingGoesOn()
    {
        var (e, before, after, options) = TrainWithNanGradients(6, 7, 9, 10);

        Assert.Null(e);
        // The two skipped steps changed nothing; the next good one trained from there.
        AssertSameFiniteWeights(before, after);
        Assert.True(File.Exists(Path.Combine(options.OutDir, "metrics.json")));
    }

    [Fact]
    public void TheGradientNormIsThatOfEveryGradientTogetherAndSeesAnInfinity()
    {
        using var model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto"));
        using var optimizer = FusedAdamW.ForModel(model, 1e-3, 0.05);
        Assert.Equal(0, optimizer.GradientNorm());
        var x = randn(2, 1, 32, 32, generator: new Generator(3));
        var labels = tensor(new long[] { 1, 2 });
        using (var scope = NewDisposeScope())
        {
            nn.functional.cross_entropy(model.call(x), labels).backward();
            // The norm of every gradient together, as stacking the per-tensor norms gives it.
            var expected = Math.Sqrt(model.parameters().Select(p => p.grad).OfType<Tensor>().Sum(g => Math.Pow(g.norm().item<float>(), 2)));
            Assert.Equal(expected, optimizer.GradientNorm(), expected * 1e-5);
            Assert.True(expected > 0);
            model.parameters().First().grad![0] = float.PositiveInfinity;
            Assert.Equal(double.PositiveInfinity, optimizer.GradientNorm());
        }
        optimizer.ZeroGrad();
        Assert.Equal(0, optimizer.GradientNorm());
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
