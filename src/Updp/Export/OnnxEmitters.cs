using TorchSharp;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Export;

/// <summary>
/// Writes one kind of module (in eval mode) into an ONNX graph. Like the block rules, emitters are
/// registered per module type in <see cref="OnnxEmitters"/>, so the exporter's core never names a
/// model family: a family adds emitters for its own modules and reuses the shared ones (convolution,
/// linear, layer norm, sequential, …) through <see cref="OnnxEmitContext.Emit"/>.
/// </summary>
public interface IOnnxEmitter
{
    /// <summary>The module types this emitter writes; a generic type definition covers all its closed types.</summary>
    IReadOnlyCollection<Type> ModuleTypes { get; }

    /// <summary>
    /// Adds the nodes computing <paramref name="module"/>'s eval-mode forward pass on the tensor
    /// named <paramref name="input"/> and returns the name of its output.
    /// </summary>
    /// <param name="path">The module's parameter-name prefix in the model (<c>stages.1.blocks.0</c>); empty for the model itself.</param>
    string Emit(OnnxEmitContext context, nn.Module module, string path, string input);
}

/// <summary>A model family that can be exported to ONNX: the capability <see cref="OnnxEmitters"/> asks families for.</summary>
internal interface IExportableFamily : IModelFamily
{
    /// <summary>The emitters for the family's own modules (the model, its blocks in every form, …); shared layers have theirs already.</summary>
    IEnumerable<IOnnxEmitter> OnnxEmitters { get; }
}

/// <summary>
/// The <see cref="IOnnxEmitter"/>s known to the library, keyed by module type: the shared layers',
/// those of every <see cref="IExportableFamily"/> in <see cref="ModelFamilies.All"/>, and any added
/// with <see cref="Register"/>.
/// </summary>
public static class OnnxEmitters
{
    private static readonly Lock Gate = new();
    private static readonly Dictionary<Type, IOnnxEmitter> Emitters = [];

    static OnnxEmitters()
    {
        Register(new SequentialEmitter());
        Register(new IdentityEmitter());
        Register(new FadingBlockEmitter());
        Register(new Conv2dEmitter());
        Register(new LinearEmitter());
        Register(new DepthwiseConv2dEmitter());
        Register(new PatchConv2dEmitter());
        Register(new LayerNorm2dEmitter());
        Register(new LayerNormEmitter());
        Register(new BatchNorm2dEmitter());
        foreach (var emitter in ModelFamilies.All.OfType<IExportableFamily>().SelectMany(f => f.OnnxEmitters))
        {
            Register(emitter);
        }
    }

    /// <summary>Adds an emitter for its <see cref="IOnnxEmitter.ModuleTypes"/>; a type may have one emitter only.</summary>
    public static void Register(IOnnxEmitter emitter)
    {
        ArgumentNullException.ThrowIfNull(emitter);
        lock (Gate)
        {
            if (emitter.ModuleTypes.FirstOrDefault(Emitters.ContainsKey) is { } taken)
            {
                throw new InvalidOperationException($"{taken.Name} already has an ONNX emitter ({Emitters[taken].GetType().Name})");
            }
            foreach (var type in emitter.ModuleTypes)
            {
                Emitters.Add(type, emitter);
            }
        }
    }

    /// <summary>The emitter for <paramref name="module"/>'s type (or its generic type definition), or null.</summary>
    public static IOnnxEmitter? Find(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        var type = module.GetType();
        lock (Gate)
        {
            return Emitters.GetValueOrDefault(type)
                ?? (type.IsGenericType ? Emitters.GetValueOrDefault(type.GetGenericTypeDefinition()) : null);
        }
    }
}

/// <summary>What an emitter works with: the graph under construction and recursion into sub-modules.</summary>
public sealed class OnnxEmitContext
{
    public OnnxEmitContext(OnnxGraphBuilder graph, int inputSize)
    {
        Graph = graph;
        InputSize = inputSize;
    }

    public OnnxGraphBuilder Graph { get; }

    /// <summary>The side of the graph's square input (for models built for one input size).</summary>
    public int InputSize { get; }

    /// <summary>Emits <paramref name="module"/> through its registered emitter.</summary>
    /// <exception cref="MissingOnnxEmitterException">No emitter is registered for the module's type; the message names the module.</exception>
    public string Emit(nn.Module module, string path, string input)
    {
        ArgumentNullException.ThrowIfNull(module);
        var emitter = OnnxEmitters.Find(module)
            ?? throw new MissingOnnxEmitterException(module.GetType().Name, path.Length == 0 ? "(model)" : path);
        return emitter.Emit(this, module, path, input);
    }

    /// <summary>Emits the registered child <paramref name="name"/> of <paramref name="parent"/>.</summary>
    public string EmitChild(nn.Module parent, string path, string name, string input) => Emit(Child(parent, path, name), Join(path, name), input);

    /// <summary>The registered child module <paramref name="name"/> of <paramref name="parent"/>.</summary>
    public static nn.Module Child(nn.Module parent, string path, string name)
    {
        ArgumentNullException.ThrowIfNull(parent);
        foreach (var (childName, child) in parent.named_children())
        {
            if (childName == name)
            {
                return child;
            }
        }
        throw new InvalidOperationException($"ONNX export: {parent.GetType().Name} at '{path}' has no child module '{name}'");
    }

    /// <summary>A parameter or module name below <paramref name="path"/>: <c>Join("stages.1", "downsample")</c> = <c>stages.1.downsample</c>.</summary>
    public static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";

    /// <summary>The name of an operation <paramref name="op"/> inside the module at <paramref name="path"/>: <c>stages.1.blocks.0/conv_dw</c>.</summary>
    public static string NodeName(string path, string op) => path.Length == 0 ? op : $"{path}/{op}";

    /// <summary>The name of a module that is one operation: its parent's path, a slash, its own name (<c>stem/0</c>).</summary>
    public static string NodeName(string path)
    {
        var dot = path.LastIndexOf('.');
        return dot < 0 ? path : $"{path[..dot]}/{path[(dot + 1)..]}";
    }
}

/// <summary>An emitter for one module type, written as a function (how the families register theirs).</summary>
internal sealed class DelegateEmitter(Type type, Func<OnnxEmitContext, nn.Module, string, string, string> emit) : IOnnxEmitter
{
    public IReadOnlyCollection<Type> ModuleTypes { get; } = [type];

    public string Emit(OnnxEmitContext context, nn.Module module, string path, string input) => emit(context, module, path, input);
}
