using TorchSharp;
using Updp.Data;
using static TorchSharp.torch;

namespace Updp.Training;

/// <summary>Top-1 accuracy and mean cross-entropy of a model on a data set.</summary>
public sealed record EvalResult(double Top1, double Loss, int Images)
{
    /// <summary>
    /// Counts of (true class, predicted class): <c>Confusion[t][p]</c>; null unless asked for
    /// (<see cref="Evaluator.Evaluate(nn.Module{Tensor, Tensor}, IEnumerable{Batch}, int)"/>).
    /// </summary>
    public IReadOnlyList<long[]>? Confusion { get; init; }

    /// <summary>Top-1 of each true class (NaN for a class without images); null without <see cref="Confusion"/>.</summary>
    public IReadOnlyList<double>? PerClassTop1 =>
        Confusion?.Select((row, t) => row.Sum() is var n and > 0 ? (double)row[t] / n : double.NaN).ToList();
}

/// <summary>Evaluates a classifier in eval mode without gradients, on the model's device (batches are moved there).</summary>
public static class Evaluator
{
    public static EvalResult Evaluate(nn.Module<Tensor, Tensor> model, IEnumerable<Batch> batches) => Evaluate(model, batches, classCount: 0);

    /// <summary>
    /// As <see cref="Evaluate(nn.Module{Tensor, Tensor}, IEnumerable{Batch})"/>, and with
    /// <paramref name="classCount"/> &gt; 0 also the confusion matrix over that many classes.
    /// </summary>
    public static EvalResult Evaluate(nn.Module<Tensor, Tensor> model, IEnumerable<Batch> batches, int classCount)
    {
        var confusion = classCount > 0 ? Enumerable.Range(0, classCount).Select(_ => new long[classCount]).ToArray() : null;
        var wasTraining = model.training;
        var device = Devices.Of(model);
        model.eval();
        try
        {
            using var _ = no_grad();
            long correct = 0, seen = 0;
            double lossSum = 0;
            foreach (var batch in batches)
            {
                using var owned = batch;
                using var scope = NewDisposeScope();
                var labels = batch.Labels.OnDevice(device);
                var logits = model.call(batch.Images.OnDevice(device));
                lossSum += nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.Sum).item<float>();
                var predicted = logits.argmax(1);
                correct += predicted.eq(labels).sum().item<long>();
                if (confusion is not null)
                {
                    var truth = batch.Labels.OnDevice(Devices.Cpu).data<long>().ToArray();
                    var guess = predicted.OnDevice(Devices.Cpu).data<long>().ToArray();
                    for (var i = 0; i < truth.Length; i++)
                    {
                        confusion[truth[i]][guess[i]]++;
                    }
                }
                seen += batch.Labels.shape[0];
            }
            return seen == 0
                ? throw new ArgumentException("cannot evaluate on an empty data set", nameof(batches))
                : new EvalResult((double)correct / seen, lossSum / seen, (int)seen) { Confusion = confusion };
        }
        finally
        {
            model.train(wasTraining);
        }
    }
}
