using System.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using Updp.Data;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Training;

/// <summary>Where a training run stands; enough to resume it after an interruption.</summary>
public sealed record TrainState(int EpochsDone, double BestValTop1, int BestEpoch, double TrainSeconds, IReadOnlyList<EpochResult> History)
{
    public static TrainState Fresh { get; } = new(0, double.NegativeInfinity, 0, 0, []);
}

/// <summary>Persists a run: the best model so far and the state needed to resume.</summary>
public interface ITrainingStore
{
    /// <summary>Restores model and optimizer from the last finished epoch, or returns null.</summary>
    TrainState? TryResume(ImageClassifier model, FusedAdamW optimizer);

    void SaveBest(ImageClassifier model, EpochResult epoch);

    void SaveEpoch(ImageClassifier model, FusedAdamW optimizer, TrainState state);
}

/// <summary>
/// Supervised training with AdamW (no weight decay on norms, biases and layer scales), a per-step
/// cosine schedule with warm-up, label smoothing and per-epoch validation, on the model's device
/// (batches are moved there).
/// </summary>
public sealed class Trainer
{
    private readonly ImageClassifier _model;
    private readonly TrainOptions _options;

    public Trainer(ImageClassifier model, TrainOptions options)
    {
        _model = model;
        _options = options;
        if (options.Epochs < 1)
        {
            throw new ArgumentException($"epochs must be ≥ 1, got {options.Epochs}", nameof(options));
        }
    }

    /// <summary>Replaces the loss (e.g. distillation); receives logits, images and labels.</summary>
    public Func<Tensor, Tensor, Tensor, Tensor>? Loss { get; init; }

    /// <summary>Called before every optimisation step with (global step, total steps), e.g. to ramp λ.</summary>
    public Action<long, long>? BeforeStep { get; init; }

    /// <summary>
    /// Called before each epoch's validation with (steps done, total steps), e.g. to put the model in
    /// the configuration that is validated and saved.
    /// </summary>
    public Action<long, long>? BeforeEvaluate { get; init; }

    /// <summary>
    /// Called after each epoch's validation with the 1-based epoch: whether this epoch's model may
    /// become the best one (e.g. not while λ is still ramping). Null lets every epoch compete.
    /// </summary>
    public Func<int, bool>? CanBeBest { get; init; }

    /// <summary>Consecutive steps with a non-finite loss or gradient norm (each skipped, no update) after which training stops.</summary>
    public const int NonFiniteStepLimit = 3;

    public TrainState Fit(BatchLoader train, BatchLoader val, ITrainingStore? store = null,
        IProgress<TrainProgress>? progress = null, CancellationToken cancellation = default)
    {
        using var optimizer = FusedAdamW.ForModel(_model, _options.LearningRate, _options.WeightDecay);
        var state = store?.TryResume(_model, optimizer) ?? TrainState.Fresh;

        var stepsPerEpoch = _options.MaxStepsPerEpoch is int cap ? Math.Min(cap, train.BatchesPerEpoch) : train.BatchesPerEpoch;
        var totalSteps = (long)stepsPerEpoch * _options.Epochs;
        var schedule = new LearningRateSchedule(_options.LearningRate,
            WarmupSteps: Math.Min(totalSteps / 2, (long)Math.Round(_options.WarmupEpochs * stepsPerEpoch)),
            TotalSteps: totalSteps, MinLr: _options.MinLearningRate);
        var history = state.History.ToList();

        for (var epoch = state.EpochsDone + 1; epoch <= _options.Epochs; epoch++)
        {
            cancellation.ThrowIfCancellationRequested();
            var clock = Stopwatch.StartNew();
            var (trainLoss, trainTop1, dataSeconds) = TrainEpoch(optimizer, train, epoch, stepsPerEpoch, schedule, progress, cancellation);
            var trainSeconds = clock.Elapsed.TotalSeconds;
            BeforeEvaluate?.Invoke((long)epoch * stepsPerEpoch, totalSteps);
            var valResult = Evaluator.Evaluate(_model, val.Epoch(0));
            if (!double.IsFinite(valResult.Loss))
            {
                throw new TrainingDivergedException("the validation loss is not finite", epoch, 0);
            }
            var isBest = valResult.Top1 > state.BestValTop1 && (CanBeBest?.Invoke(epoch) ?? true);
            var result = new EpochResult(epoch, trainLoss, trainTop1, valResult.Top1, valResult.Loss, clock.Elapsed.TotalSeconds, isBest)
            {
                DataSeconds = dataSeconds,
                TrainSeconds = trainSeconds,
            };
            history.Add(result);
            state = new TrainState(epoch,
                isBest ? valResult.Top1 : state.BestValTop1,
                isBest ? epoch : state.BestEpoch,
                state.TrainSeconds + trainSeconds,
                history.ToList());
            if (isBest)
            {
                store?.SaveBest(_model, result);
            }
            store?.SaveEpoch(_model, optimizer, state);
        }
        return state;
    }

    private (double Loss, double Top1, double DataSeconds) TrainEpoch(FusedAdamW optimizer, BatchLoader train, int epoch, int steps,
        LearningRateSchedule schedule, IProgress<TrainProgress>? progress, CancellationToken cancellation)
    {
        _model.train();
        // Seeding per epoch makes a resumed run draw the same stochastic-depth masks as an uninterrupted one.
        random.manual_seed(_options.Seed * 1000L + epoch);
        double lossSum = 0;
        long correct = 0, seen = 0;
        var step = 0;
        var nonFinite = 0;
        string? streak = null;
        var clock = Stopwatch.StartNew();
        var device = Devices.Of(_model);

        // Time spent waiting for the next batch is data time the prefetch did not hide.
        var waiting = new Stopwatch();
        using var batches = train.Epoch(epoch).GetEnumerator();
        while (step < steps)
        {
            waiting.Start();
            var more = batches.MoveNext();
            waiting.Stop();
            if (!more)
            {
                break;
            }
            var batch = batches.Current;
            cancellation.ThrowIfCancellationRequested();
            var globalStep = (long)(epoch - 1) * steps + step;
            var lr = schedule.At(globalStep);
            foreach (var group in optimizer.Groups)
            {
                group.LearningRate = lr;
            }
            BeforeStep?.Invoke(globalStep, schedule.TotalSteps);

            using (batch)
            using (var scope = NewDisposeScope())
            {
                optimizer.ZeroGrad();
                var (images, labels) = (batch.Images.OnDevice(device), batch.Labels.OnDevice(device));
                var logits = _model.call(images);
                var loss = Loss?.Invoke(logits, images, labels)
                    ?? nn.functional.cross_entropy(logits, labels, label_smoothing: _options.LabelSmoothing);
                var lossValue = loss.item<float>();
                // A finite loss can still give NaN or ±inf gradients (an overflow in the backward pass),
                // which AdamW would write into the weights and both moments: such a step is skipped too.
                var failed = float.IsFinite(lossValue) ? null : "loss";
                if (failed is null)
                {
                    loss.backward();
                    failed = double.IsFinite(optimizer.GradientNorm()) ? null : "gradient norm";
                }
                if (failed is null)
                {
                    nonFinite = 0;
                    optimizer.Step();
                    var n = labels.shape[0];
                    lossSum += lossValue * n;
                    correct += logits.argmax(1).eq(labels).sum().item<long>();
                    seen += n;
                }
                else
                {
                    // What the steps of this streak failed on: one kind, or both.
                    streak = nonFinite == 0 || streak == failed ? failed : "loss or gradient norm";
                    if (++nonFinite >= NonFiniteStepLimit)
                    {
                        throw new TrainingDivergedException($"the {streak} was not finite for {nonFinite} consecutive steps", epoch, step + 1);
                    }
                }
            }
            step++;

            if (progress is not null)
            {
                var elapsed = clock.Elapsed.TotalSeconds;
                var secondsPerStep = elapsed / step;
                var remainingSteps = (long)(steps - step) + (long)(_options.Epochs - epoch) * steps;
                progress.Report(new TrainProgress(epoch, _options.Epochs, step, steps, lossSum / seen, (double)correct / seen,
                    seen / Math.Max(elapsed, 1e-9), lr, TimeSpan.FromSeconds(secondsPerStep * remainingSteps)));
            }
        }
        return seen == 0
            ? throw (nonFinite > 0
                ? new TrainingDivergedException($"the {streak} was not finite at every step", epoch, step)
                : new InvalidOperationException("the training set yielded no batches"))
            : (lossSum / seen, (double)correct / seen, waiting.Elapsed.TotalSeconds);
    }
}
