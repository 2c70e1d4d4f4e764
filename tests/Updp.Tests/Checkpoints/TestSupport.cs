using System.Buffers.Binary;
using System.Text.Json;
using TorchSharp;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Tests.Checkpoints;

/// <summary>One tensor as an independent minimal safetensors parser sees it.</summary>
internal sealed record RawTensor(string DType, long[] Shape, byte[] Data);

internal static class TestSupport
{
    public static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);

    public const string ConvMlpFixture = "convnext_atto_convmlp.pt";
    public const string LinearFixture = "convnext_atto_linear.pt";
    public const string IoFixture = "convnext_atto_io.safetensors";

    /// <summary>The fixtures' convnext_atto (1 channel, 10 classes, stem stride 2), every parameter random (not timm's near-identity init).</summary>
    public static ImageClassifier RandomAtto(int seed)
    {
        var model = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto") with { StemStride = 2 });
        Pruning.PruningTestSupport.Randomize(model, seed);
        return model;
    }

    /// <summary>The raw bytes of a tensor in row-major order.</summary>
    public static byte[] Bytes(Tensor t)
    {
        using var c = t.detach().contiguous();
        return c.bytes.ToArray();
    }

    /// <summary>Same dtype, shape and bytes: bit-identical.</summary>
    public static bool Identical(Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.shape.AsSpan().SequenceEqual(b.shape) && Bytes(a).AsSpan().SequenceEqual(Bytes(b));

    /// <summary>
    /// Parses a safetensors file without the library: 8-byte little-endian header size, JSON header,
    /// data section. Checks the structural rules the format requires.
    /// </summary>
    public static (Dictionary<string, RawTensor> Tensors, Dictionary<string, string> Metadata, ulong HeaderSize) ParseSafetensors(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
        var data = bytes.AsSpan(8 + (int)n);
        var tensors = new Dictionary<string, RawTensor>();
        var metadata = new Dictionary<string, string>();
        long covered = 0;
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__")
            {
                foreach (var m in p.Value.EnumerateObject())
                {
                    metadata[m.Name] = m.Value.GetString()!;
                }
                continue;
            }
            var shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offsets = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(2, offsets.Length);
            covered += offsets[1] - offsets[0];
            tensors.Add(p.Name, new RawTensor(p.Value.GetProperty("dtype").GetString()!, shape, data[(int)offsets[0]..(int)offsets[1]].ToArray()));
        }
        Assert.Equal(data.Length, covered);
        return (tensors, metadata, n);
    }

    public static float MaxAbsDiff(Tensor a, Tensor b)
    {
        using var d = (a - b).abs().max();
        return d.item<float>();
    }
}
