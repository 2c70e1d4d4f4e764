using System.Runtime.InteropServices;
using Google.Protobuf;
using Onnx;
using static TorchSharp.torch;

namespace Updp.Export;

/// <summary>
/// Builds an ONNX graph (OnnxSharp's protobuf classes) node by node. Tensor names are chosen by the
/// emitters: initializers carry the model's parameter names (<c>stages.1.blocks.0.conv_dw.weight</c>),
/// node outputs the node's name (<c>stages.1.blocks.0/conv_dw</c>), so the graph reads like the model.
/// Every initializer is stored once: a second request under the same name returns the first.
/// </summary>
public sealed class OnnxGraphBuilder
{
    private readonly GraphProto _graph = new();
    private readonly Dictionary<string, TensorProto> _initializers = new(StringComparer.Ordinal);
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    public OnnxGraphBuilder(int opset, string graphName)
    {
        Opset = opset;
        _graph.Name = graphName;
    }

    /// <summary>The default-domain opset the graph is written for; emitters choose op forms by it.</summary>
    public int Opset { get; }

    /// <summary>The graph built so far.</summary>
    public GraphProto Graph => _graph;

    /// <summary>
    /// The initializer <paramref name="name"/> holding <paramref name="value"/> (float32, as stored);
    /// if that name was added before, the stored one is reused, and it must have the same shape.
    /// </summary>
    public string Initializer(string name, Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (_initializers.TryGetValue(name, out var existing))
        {
            if (!existing.Dims.SequenceEqual(value.shape))
            {
                throw new InvalidOperationException(
                    $"initializer '{name}' was added with shape [{string.Join(",", existing.Dims)}] and again with [{string.Join(",", value.shape)}]");
            }
            return name;
        }
        using var scope = NewDisposeScope();
        var data = value.detach().to_type(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        tensor.Dims.AddRange(value.shape);
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(data.AsSpan()));
        return AddInitializer(tensor);
    }

    /// <summary>A float32 constant (a λ, say) stored as an initializer named <paramref name="name"/>; reused if that name exists.</summary>
    public string Constant(string name, float value, params long[] shape)
    {
        if (_initializers.ContainsKey(name))
        {
            return name;
        }
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        tensor.Dims.AddRange(shape);
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(new[] { value }.AsSpan()));
        return AddInitializer(tensor);
    }

    /// <summary>An int64 vector constant (a shape or axes operand) named <paramref name="name"/>; reused if that name exists.</summary>
    public string Int64s(string name, params long[] values)
    {
        if (_initializers.ContainsKey(name))
        {
            return name;
        }
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        tensor.Dims.Add(values.Length);
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));
        return AddInitializer(tensor);
    }

    /// <summary>
    /// Adds a node named <paramref name="name"/> (made unique if taken) with one output of the same
    /// name, and returns that output.
    /// </summary>
    public string Node(string opType, string name, IEnumerable<string> inputs, params AttributeProto[] attributes)
    {
        var unique = UniqueName(name);
        var node = new NodeProto { OpType = opType, Name = unique };
        node.Input.AddRange(inputs);
        node.Output.Add(unique);
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return unique;
    }

    /// <summary>Declares a float32 graph input; null dimensions are symbolic (named by <paramref name="symbols"/>).</summary>
    public void Input(string name, long?[] shape, params string[] symbols) => _graph.Input.Add(ValueInfo(UniqueName(name), shape, symbols));

    /// <summary>Declares <paramref name="tensor"/> a float32 graph output.</summary>
    public void Output(string tensor, long?[] shape, params string[] symbols) => _graph.Output.Add(ValueInfo(tensor, shape, symbols));

    public static AttributeProto Attr(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Attr(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static AttributeProto Attr(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    private string AddInitializer(TensorProto tensor)
    {
        if (!_names.Add(tensor.Name))
        {
            throw new InvalidOperationException($"the name '{tensor.Name}' is taken in the graph");
        }
        _initializers.Add(tensor.Name, tensor);
        _graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    private string UniqueName(string name)
    {
        var unique = name;
        for (var i = 1; !_names.Add(unique); i++)
        {
            unique = $"{name}_{i}";
        }
        return unique;
    }

    private static ValueInfoProto ValueInfo(string name, long?[] shape, string[] symbols)
    {
        var tensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = new TensorShapeProto() };
        var symbol = 0;
        foreach (var d in shape)
        {
            tensorType.Shape.Dim.Add(d is long v
                ? new TensorShapeProto.Types.Dimension { DimValue = v }
                : new TensorShapeProto.Types.Dimension { DimParam = symbols[symbol++] });
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } };
    }
}
