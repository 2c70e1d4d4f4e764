using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Updp.Models;

namespace Updp.Pruning.Blocks;

/// <summary>Recomputes batch-norm running statistics from training batches (docs/METHOD.md#batch-norm-calibration).</summary>
public static class BatchNormCalibration
{
    /// <summary>
    /// Runs <paramref name="batches"/> through <paramref name="model"/> and makes each batch norm's
    /// running mean and variance the plain average, over the batches that reach it, of each batch's
    /// mean and unbiased variance (PyTorch's cumulative average, momentum=None).
    /// Only the batch norms run in train mode; every other module runs in eval mode (no dropout or
    /// stochastic depth) and no gradients are recorded. Every module's mode and every batch norm's
    /// momentum are restored afterwards. A batch norm that no batch reaches (e.g. in a block at λ=0)
    /// keeps its statistics; if a forward pass fails, all of them do. Batches are moved to the model's device.
    /// </summary>
    /// <param name="norms">The batch norms to recalibrate; null for every <see cref="BatchNorm"/> in the model.</param>
    /// <returns>How many batch norms were recalibrated (reached by at least one batch).</returns>
    public static int Recalibrate(nn.Module<Tensor, Tensor> model, IEnumerable<Tensor> batches, IEnumerable<BatchNorm>? norms = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batches);
        var targets = (norms ?? model.modules().OfType<BatchNorm>()).Distinct().ToList();
        if (targets.FirstOrDefault(bn => bn.running_mean is null || bn.running_var is null) is { } untracked)
        {
            throw new ArgumentException($"batch norm {untracked.GetName()} does not track running statistics", nameof(norms));
        }
        if (targets.Count == 0)
        {
            // Nothing to calibrate (a pruned form that adds no batch norm): spare the forward passes.
            return 0;
        }

        // train() recurses, so modes are restored parents first (by name depth; TorchSharp's
        // named_modules() is not in pre-order).
        var modes = model.named_modules()
            .OrderBy(m => m.name.Count(ch => ch == '.'))
            .Select(m => (m.module, m.module.training))
            .Prepend(((nn.Module)model, model.training)).ToList();
        var saved = targets.Select(bn => (Mean: bn.running_mean!.clone(), Var: bn.running_var!.clone(),
            Batches: bn.num_batches_tracked?.clone(), bn.momentum)).ToList();
        var calls = new int[targets.Count];
        var hooks = new List<Action>();
        var succeeded = false;
        try
        {
            model.eval();
            for (var i = 0; i < targets.Count; i++)
            {
                var (bn, k) = (targets[i], i);
                bn.train();
                // Momentum 1 then 1/2, 1/3, …: the n-th batch enters the running average with weight 1/n.
                // The first batch replaces the old statistics, reset anyway so a NaN there cannot survive 0·NaN.
                bn.momentum = 1.0;
                using (no_grad())
                {
                    bn.running_mean!.zero_();
                    bn.running_var!.FillInPlace(1);
                }
                hooks.Add(bn.register_forward_hook((_, _, output) =>
                {
                    calls[k]++;
                    bn.momentum = 1.0 / (calls[k] + 1);
                    return output;
                }).remove);
            }
            var device = Devices.Of(model);
            using (no_grad())
            {
                foreach (var batch in batches)
                {
                    using var scope = NewDisposeScope();
                    model.call(batch.OnDevice(device));
                }
            }
            succeeded = true;
            return calls.Count(c => c > 0);
        }
        finally
        {
            foreach (var remove in hooks)
            {
                remove();
            }
            using (no_grad())
            {
                for (var i = 0; i < targets.Count; i++)
                {
                    var (bn, s) = (targets[i], saved[i]);
                    bn.momentum = s.momentum;
                    if (!succeeded || calls[i] == 0)
                    {
                        bn.running_mean!.copy_(s.Mean);
                        bn.running_var!.copy_(s.Var);
                        if (s.Batches is not null)
                        {
                            bn.num_batches_tracked!.copy_(s.Batches);
                        }
                    }
                    s.Mean.Dispose();
                    s.Var.Dispose();
                    s.Batches?.Dispose();
                }
            }
            foreach (var (module, training) in modes)
            {
                module.train(training);
            }
        }
    }
}
