using TorchSharp;
using Updp.Data;
using static TorchSharp.torch;

namespace Updp.Training;

/// <summary>Top-1 accuracy and mean cross-entropy of a model on a data set.</summary>
public sealed record EvalResult(double Top1, double Loss, int Images);

/// <summary>Evaluates a classifier in eval mode without gradients.</summary>
public static class Evaluator
{
    public static EvalResult Evaluate(nn.Module<Tensor, Tensor> model, IEnumerable<Batch> batches)
    {
        var wasTraining = model.training;
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
                var logits = model.call(batch.Images);
                lossSum += nn.functional.cross_entropy(logits, batch.Labels, reduction: nn.Reduction.Sum).item<float>();
                correct += logits.argmax(1).eq(batch.Labels).sum().item<long>();
                seen += batch.Labels.shape[0];
            }
            return seen == 0
                ? throw new ArgumentException("cannot evaluate on an empty data set", nameof(batches))
                : new EvalResult((double)correct / seen, lossSum / seen, (int)seen);
        }
        finally
        {
            model.train(wasTraining);
        }
    }
}
