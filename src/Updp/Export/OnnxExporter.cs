using System.Reflection;
using System.Text.Json;
using Google.Protobuf;
using Onnx;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Export;

/// <summary>How ONNX Runtime's outputs compared with TorchSharp's.</summary>
/// <param name="MaxAbsDiff">Largest |ONNX Runtime − TorchSharp| over all outputs compared.</param>
/// <param name="Tolerance"><see cref="OnnxExporter.RelativeTolerance"/>·max(1, <paramref name="MaxAbsOutput"/>).</param>
/// <param name="MaxAbsOutput">Largest |y| of TorchSharp's outputs.</param>
/// <param name="Batches">Input batches compared.</param>
/// <param name="Images">Images in those batches.</param>
public sealed record OnnxParity(double MaxAbsDiff, double Tolerance, double MaxAbsOutput, int Batches, int Images)
{
    /// <summary>max |Δ| / max(1, max |y|): the number that must not exceed <see cref="OnnxExporter.RelativeTolerance"/>.</summary>
    public double RelativeDiff => MaxAbsDiff / Math.Max(1, MaxAbsOutput);
}

/// <summary>What <see cref="OnnxExporter.Export"/> wrote.</summary>
public sealed record OnnxExportReport(string Path, int Opset, int InputSize, int Nodes, int Initializers, long Bytes, OnnxParity Parity);

/// <summary>The exported graph does not compute what the model computes; nothing was written.</summary>
public sealed class OnnxVerificationException(string message, OnnxParity parity) : Exception(message)
{
    public OnnxParity Parity { get; } = parity;
}

/// <summary>
/// Exports an <see cref="ImageClassifier"/> in eval mode to ONNX: input <c>input</c> [batch, C, S, S]
/// with a symbolic batch dimension, output <c>logits</c> [batch, classes]. The graph is assembled by
/// the <see cref="OnnxEmitters"/> registered for the model's module types, starting at the model
/// itself; each parameter is stored once, as an initializer named and shaped as in the state dict.
/// A written file is verified in ONNX Runtime against TorchSharp before it replaces the target.
/// ONNX Runtime runs on the CPU: a model on another device is exported from a CPU copy and checked
/// against the model on its device.
/// </summary>
public static class OnnxExporter
{
    /// <summary>Lowest opset: LayerNormalization is in the default domain from 17.</summary>
    public const int MinOpset = 17;

    /// <summary>Highest opset we write (ONNX IR version 10).</summary>
    public const int MaxOpset = 21;

    public const int DefaultOpset = 17;

    /// <summary>ONNX Runtime and TorchSharp outputs must agree to this times max(1, max |y|).</summary>
    public const double RelativeTolerance = 1e-4;

    public const string InputName = "input";

    public const string OutputName = "logits";

    /// <summary>The output of a module exported on its own (<see cref="BuildModule"/>).</summary>
    public const string ModuleOutputName = "output";

    /// <summary>The ONNX model of <paramref name="model"/> for <paramref name="inputSize"/>² inputs.</summary>
    /// <exception cref="NotSupportedException">A module has no registered emitter (the message names it).</exception>
    public static ModelProto Build(ImageClassifier model, int inputSize, int opset = DefaultOpset)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(inputSize, 1);
        if (opset is < MinOpset or > MaxOpset)
        {
            throw new ArgumentException($"opset {opset} is not supported: expected {MinOpset}–{MaxOpset}", nameof(opset));
        }
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            var g = new OnnxGraphBuilder(opset, model.Config.Name);
            g.Input(InputName, [null, model.Config.InChans, inputSize, inputSize], "batch");
            var output = new OnnxEmitContext(g, inputSize).Emit(model, "", InputName);
            Rename(g.Graph, output, OutputName);
            g.Output(OutputName, [null, model.Config.NumClasses], "batch");

            var proto = new ModelProto
            {
                IrVersion = IrVersion(opset),
                ProducerName = "updp",
                ProducerVersion = typeof(OnnxExporter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "",
                Graph = g.Graph,
                DocString = $"{model.Config.Name} exported by updp in eval mode",
            };
            proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
            proto.MetadataProps.Add(new StringStringEntryProto { Key = "updp.model", Value = JsonSerializer.Serialize(model.Config) });
            // Recorded for the reader of the file; a block of a kind without pruning rule has no form to record.
            var state = model.Blocks.All(b => b.Module is DroppedBlock or FadingBlock || BlockRules.Find(b.Module) is not null) ? PruningState.Of(model) : null;
            if (state is { IsEmpty: false })
            {
                proto.MetadataProps.Add(new StringStringEntryProto { Key = "updp.pruning", Value = JsonSerializer.Serialize(state) });
            }
            return proto;
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="path"/> (atomically: a temporary file, then a
    /// rename) after checking, in ONNX Runtime with <paramref name="threads"/> intra-op threads, that
    /// the written file computes what the model computes in eval mode on <paramref name="checkInputs"/>
    /// (real images, say; batches of any size): max |Δ| ≤ <see cref="RelativeTolerance"/>·max(1, max |y|).
    /// The input size is the side of the first batch. A model that is not on the CPU is exported from
    /// a CPU copy and checked against itself, on its device.
    /// </summary>
    /// <exception cref="OnnxVerificationException">The outputs differ by more than the tolerance; no file is left behind.</exception>
    public static OnnxExportReport Export(ImageClassifier model, string path, IReadOnlyList<Tensor> checkInputs, int opset = DefaultOpset, int? threads = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(checkInputs);
        var inputSize = InputSizeOf(checkInputs);
        ModelProto proto;
        using (var cpuCopy = CpuCopy(model))
        {
            proto = Build(cpuCopy ?? model, inputSize, opset);
        }
        var bytes = proto.ToByteArray();
        OnnxParity? parity = null;
        AtomicFile.WriteVia(path, tmp =>
        {
            File.WriteAllBytes(tmp, bytes);
            // The file on disk is what is checked, loaded as a user would load it.
            using var session = OnnxRuntimeModel.Load(tmp, threads ?? get_num_threads());
            parity = Check(session, model, checkInputs);
        });
        return new OnnxExportReport(Path.GetFullPath(path), opset, inputSize, proto.Graph.Node.Count, proto.Graph.Initializer.Count, bytes.LongLength, parity!);
    }

    /// <summary>
    /// Compares <paramref name="session"/>'s outputs with <paramref name="model"/>'s (eval mode, on its
    /// device, the inputs moved there) on <paramref name="inputs"/> and throws unless
    /// max |Δ| ≤ <see cref="RelativeTolerance"/>·max(1, max |y|).
    /// </summary>
    /// <exception cref="OnnxVerificationException">They differ by more (or produce NaN).</exception>
    public static OnnxParity Check(OnnxRuntimeModel session, ImageClassifier model, IReadOnlyList<Tensor> inputs)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Check(session, (nn.Module<Tensor, Tensor>)model, inputs);
    }

    /// <summary>
    /// The ONNX model of one module on its own, a block of a model say (<see cref="BuildModule"/>'s
    /// use: timing a block in ONNX Runtime, docs/METHOD.md#latency-budget): input <c>input</c> of
    /// <paramref name="inputShape"/>, output <c>output</c> of <paramref name="outputShape"/>, both with
    /// a symbolic first (batch) dimension. The module's registered emitter writes it, as it would
    /// inside the whole model, and its parameters keep their names below <paramref name="path"/>
    /// (<c>stages.1.blocks.0</c>). A module that emits no node (a dropped block that is the identity)
    /// gets one Identity node, since a graph output cannot be its input.
    /// </summary>
    /// <param name="imageSize">The side of the images the model the module belongs to is built for (<see cref="OnnxEmitContext.InputSize"/>).</param>
    /// <exception cref="MissingOnnxEmitterException">A module has no registered emitter (the message names it).</exception>
    public static ModelProto BuildModule(nn.Module module, string path, long[] inputShape, long[] outputShape, int imageSize, int opset = DefaultOpset)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(inputShape);
        ArgumentNullException.ThrowIfNull(outputShape);
        ArgumentOutOfRangeException.ThrowIfLessThan(imageSize, 1);
        if (inputShape.Length == 0 || outputShape.Length == 0)
        {
            throw new ArgumentException("a module's input and output need a batch dimension");
        }
        if (opset is < MinOpset or > MaxOpset)
        {
            throw new ArgumentException($"opset {opset} is not supported: expected {MinOpset}–{MaxOpset}", nameof(opset));
        }
        var wasTraining = module.training;
        module.eval();
        try
        {
            using var _ = no_grad();
            var g = new OnnxGraphBuilder(opset, path.Length == 0 ? module.GetType().Name : path);
            g.Input(InputName, [null, .. inputShape.Skip(1).Select(d => (long?)d)], "batch");
            var output = new OnnxEmitContext(g, imageSize).Emit(module, path, InputName);
            if (output == InputName)
            {
                g.Node("Identity", ModuleOutputName, [InputName]);
            }
            else
            {
                Rename(g.Graph, output, ModuleOutputName);
            }
            g.Output(ModuleOutputName, [null, .. outputShape.Skip(1).Select(d => (long?)d)], "batch");
            var proto = new ModelProto
            {
                IrVersion = IrVersion(opset),
                ProducerName = "updp",
                ProducerVersion = typeof(OnnxExporter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "",
                Graph = g.Graph,
                DocString = $"{(path.Length == 0 ? module.GetType().Name : path)} ({module.GetType().Name}) exported by updp in eval mode",
            };
            proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
            return proto;
        }
        finally
        {
            module.train(wasTraining);
        }
    }

    /// <summary>
    /// <see cref="BuildModule"/> for <paramref name="example"/>'s shape, serialised and checked in ONNX
    /// Runtime against the module (eval mode, on its device) on <paramref name="example"/>, as
    /// <see cref="Export"/> checks a model.
    /// </summary>
    /// <exception cref="OnnxVerificationException">The outputs differ by more than the tolerance.</exception>
    public static (byte[] Model, OnnxParity Parity) ExportModuleToMemory(nn.Module<Tensor, Tensor> module, string path, Tensor example, int imageSize,
        int opset = DefaultOpset, int? threads = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(example);
        long[] outputShape;
        var wasTraining = module.training;
        module.eval();
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            outputShape = module.call(example.OnDevice(Devices.Of(module))).shape;
        }
        finally
        {
            module.train(wasTraining);
        }
        var bytes = BuildModule(module, path, example.shape, outputShape, imageSize, opset).ToByteArray();
        using var session = OnnxRuntimeModel.Load(bytes, threads ?? get_num_threads());
        return (bytes, Check(session, module, [example]));
    }

    // The comparison behind both Check overloads, for any module with one tensor in and one out.
    private static OnnxParity Check(OnnxRuntimeModel session, nn.Module<Tensor, Tensor> model, IReadOnlyList<Tensor> inputs)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.Count == 0)
        {
            throw new ArgumentException("the ONNX check needs at least one input batch", nameof(inputs));
        }
        var wasTraining = model.training;
        var device = Devices.Of(model);
        model.eval();
        try
        {
            double maxAbsDiff = 0, maxAbsOutput = 0;
            var images = 0;
            foreach (var x in inputs)
            {
                using var scope = NewDisposeScope();
                using var _ = no_grad();
                var expected = model.call(x.OnDevice(device)).to_type(ScalarType.Float32).cpu();
                var actual = session.Run(x);
                if (!actual.shape.SequenceEqual(expected.shape))
                {
                    throw new OnnxVerificationException(
                        $"ONNX Runtime's output has shape [{string.Join(",", actual.shape)}], TorchSharp's [{string.Join(",", expected.shape)}]",
                        new OnnxParity(double.NaN, double.NaN, double.NaN, inputs.Count, images));
                }
                // NaN propagates through max and then fails the check below.
                maxAbsDiff = Max(maxAbsDiff, (actual - expected).abs().max().item<float>());
                maxAbsOutput = Max(maxAbsOutput, expected.abs().max().item<float>());
                images += (int)x.shape[0];
            }
            var tolerance = RelativeTolerance * Math.Max(1, maxAbsOutput);
            var parity = new OnnxParity(maxAbsDiff, tolerance, maxAbsOutput, inputs.Count, images);
            if (!(maxAbsDiff <= tolerance))
            {
                throw new OnnxVerificationException(
                    $"the ONNX model's outputs differ from TorchSharp's by up to {maxAbsDiff:G3}, more than the tolerance {tolerance:G3} " +
                    $"({RelativeTolerance:G1}·max(1, max |y| = {maxAbsOutput:G3})) on {images} images; nothing was written",
                    parity);
            }
            return parity;
        }
        finally
        {
            model.train(wasTraining);
        }
    }

    /// <summary>The serialised model, checked in ONNX Runtime as <see cref="Export"/> checks a file (for benchmarks that need no file).</summary>
    public static (byte[] Model, OnnxParity Parity) ExportToMemory(ImageClassifier model, IReadOnlyList<Tensor> checkInputs, int opset = DefaultOpset, int? threads = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(checkInputs);
        byte[] bytes;
        using (var cpuCopy = CpuCopy(model))
        {
            bytes = Build(cpuCopy ?? model, InputSizeOf(checkInputs), opset).ToByteArray();
        }
        using var session = OnnxRuntimeModel.Load(bytes, threads ?? get_num_threads());
        return (bytes, Check(session, model, checkInputs));
    }

    // Null for a model on the CPU (exported as it is).
    private static ImageClassifier? CpuCopy(ImageClassifier model) =>
        Devices.IsCpu(Devices.Of(model)) ? null : PrunedModels.Copy(model, Devices.Cpu);

    private static int InputSizeOf(IReadOnlyList<Tensor> inputs)
    {
        if (inputs.Count == 0)
        {
            throw new ArgumentException("the ONNX check needs at least one input batch", nameof(inputs));
        }
        var shape = inputs[0].shape;
        if (shape.Length != 4 || shape[2] != shape[3])
        {
            throw new ArgumentException($"check inputs must be square NCHW batches, got [{string.Join(",", shape)}]", nameof(inputs));
        }
        return (int)shape[2];
    }

    private static double Max(double a, double b) => double.IsNaN(a) || double.IsNaN(b) ? double.NaN : Math.Max(a, b);

    // ONNX's IR version that goes with an opset (onnx/docs/Versioning.md).
    private static long IrVersion(int opset) => opset switch
    {
        <= 18 => 8,
        <= 20 => 9,
        _ => 10,
    };

    private static void Rename(GraphProto graph, string from, string to)
    {
        foreach (var node in graph.Node)
        {
            for (var i = 0; i < node.Output.Count; i++)
            {
                if (node.Output[i] == from)
                {
                    node.Output[i] = to;
                }
            }
            for (var i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i] == from)
                {
                    node.Input[i] = to;
                }
            }
        }
    }
}
