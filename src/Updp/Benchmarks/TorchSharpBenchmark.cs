using TorchSharp;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Benchmarks;

/// <summary>
/// Measures a model in TorchSharp on random inputs, on the model's device: inference latency or one
/// training step. Each timed run waits for the device (<see cref="Devices.Synchronize"/>), so queued
/// CUDA work counts where it is done.
/// </summary>
public static class TorchSharpBenchmark
{
    /// <summary>Eval-mode forward pass without gradients.</summary>
    public static LatencyStats Inference(ImageClassifier model, int batch, int resolution, int warmup = 3, int runs = 20)
    {
        model.eval();
        var device = Devices.Of(model);
        using var x = randn(batch, model.Config.InChans, resolution, resolution).MovedTo(device);
        return LatencyStats.Measure(() =>
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            model.call(x);
            Devices.Synchronize(device);
        }, batch, warmup, runs);
    }

    /// <summary>
    /// Eval-mode latency of two models on the same input, timed alternately (see
    /// <see cref="LatencyStats.MeasurePair"/>): the fair way to get a speed-up on a shared machine.
    /// </summary>
    public static (LatencyStats A, LatencyStats B) InferencePair(ImageClassifier a, ImageClassifier b, int batch, int resolution, int warmup = 3, int runs = 20)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Config.InChans != b.Config.InChans)
        {
            throw new ArgumentException($"the models take {a.Config.InChans} and {b.Config.InChans} input channels");
        }
        a.eval();
        b.eval();
        var device = Devices.Of(a);
        if (!Devices.IsOn(b.parameters().First(), device))
        {
            throw new ArgumentException($"the models are on {Devices.Name(device)} and {Devices.Name(Devices.Of(b))}; time them on one device");
        }
        using var x = randn(batch, a.Config.InChans, resolution, resolution).MovedTo(device);
        Action Forward(ImageClassifier model) => () =>
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            model.call(x);
            Devices.Synchronize(device);
        };
        return LatencyStats.MeasurePair(Forward(a), Forward(b), batch, warmup, runs);
    }

    /// <summary>One training step as <see cref="Training.Trainer"/> takes it (zero grad, forward, cross-entropy, backward, AdamW step).</summary>
    public static LatencyStats TrainStep(ImageClassifier model, int batch, int resolution, int warmup = 3, int runs = 20)
    {
        model.train();
        var device = Devices.Of(model);
        using var x = randn(batch, model.Config.InChans, resolution, resolution).MovedTo(device);
        using var y = randint(0, model.Config.NumClasses, batch).MovedTo(device);
        using var optimizer = Training.FusedAdamW.ForModel(model, 1e-3, 0.05);
        return LatencyStats.Measure(() =>
        {
            using var scope = NewDisposeScope();
            optimizer.ZeroGrad();
            nn.functional.cross_entropy(model.call(x), y).backward();
            optimizer.Step();
            Devices.Synchronize(device);
        }, batch, warmup, runs);
    }
}
