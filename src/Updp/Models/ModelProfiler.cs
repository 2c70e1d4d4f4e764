using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Updp.Models;

/// <summary>Parameters and multiply-accumulates of one prunable block.</summary>
public sealed record BlockProfile(int Index, int Stage, string Path, long Params, long Macs);

/// <summary>Parameters and multiply-accumulates of a model for one input size.</summary>
public sealed record ModelProfile(long Params, long Macs, int InputSize, IReadOnlyList<BlockProfile> Blocks);

/// <summary>
/// Counts parameters and MACs by running one forward pass with hooks on every convolution and
/// linear layer (the fvcore convention: conv and matmul MACs; norms and activations are not counted).
/// </summary>
public static class ModelProfiler
{
    public static ModelProfile Profile(ImageClassifier model, int inputSize)
    {
        var macsByModule = new Dictionary<string, long>(StringComparer.Ordinal);
        var removers = new List<Action>();
        var counted = new List<string>();
        foreach (var (name, module) in model.named_modules())
        {
            // Layers inside a module that counts its own MACs are not called as modules; skip them.
            if (counted.Any(prefix => name.StartsWith(prefix, StringComparison.Ordinal)))
            {
                continue;
            }
            if (module is IMacCounter)
            {
                counted.Add(name + ".");
            }
            if (module is Conv2d or Linear or IMacCounter)
            {
                var m = (nn.Module<Tensor, Tensor>)module;
                var key = name;
                var hook = m.register_forward_hook((mod, input, output) =>
                {
                    macsByModule[key] = macsByModule.GetValueOrDefault(key) + LayerMacs(mod, input, output);
                    return output;
                });
                removers.Add(hook.remove);
            }
        }

        var wasTraining = model.training;
        try
        {
            model.eval();
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            model.call(zeros(1, model.Config.InChans, inputSize, inputSize, device: Devices.Of(model)));
        }
        finally
        {
            foreach (var remove in removers)
            {
                remove();
            }
            model.train(wasTraining);
        }

        var blocks = model.Blocks.Select(b =>
        {
            var prefix = b.Path + ".";
            return new BlockProfile(b.Index, b.Stage, b.Path,
                b.Module.parameters().Sum(p => p.numel()),
                // The block itself when it counts its own MACs (IMacCounter), else its layers.
                macsByModule.Where(kv => kv.Key == b.Path || kv.Key.StartsWith(prefix, StringComparison.Ordinal)).Sum(kv => kv.Value));
        }).ToList();
        return new ModelProfile(CountParameters(model), macsByModule.Values.Sum(), inputSize, blocks);
    }

    public static long CountParameters(nn.Module model) => model.parameters().Sum(p => p.numel());

    private static long LayerMacs(nn.Module layer, Tensor input, Tensor output) => layer switch
    {
        IMacCounter counter => counter.CountMacs(input, output),
        // Every output element of a convolution costs (in/groups)·kh·kw multiply-accumulates.
        Conv2d conv => output.numel() * (conv.weight.shape[1] * conv.weight.shape[2] * conv.weight.shape[3]),
        Linear linear => output.numel() * linear.weight.shape[1],
        _ => 0,
    };
}
