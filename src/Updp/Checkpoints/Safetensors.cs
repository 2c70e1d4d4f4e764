using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Updp.Checkpoints;

/// <summary>
/// The safetensors format: an 8-byte little-endian header length, a UTF-8 JSON header mapping each
/// tensor name to its dtype, shape and [begin, end) byte range in the data section, and the raw
/// little-endian tensor data. An optional <c>__metadata__</c> entry holds string pairs.
/// </summary>
internal static class Safetensors
{
    public const string MetadataKey = "__metadata__";

    // Far above any real header (a few hundred bytes per tensor); keeps a corrupt length from
    // allocating gigabytes before the header is even parsed.
    private const long MaxHeaderBytes = 100L << 20;

    private sealed record Source(string Path, string Expected);

    private sealed record Entry(string Name, ScalarType DType, long[] Shape, long Begin, long End);

    /// <summary>Writes the tensors in the order given. Tensors may live on any device and need not be contiguous.</summary>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        EnsureLittleEndian();
        var list = tensors.ToList();
        var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata)
                {
                    json.WriteString(k, v);
                }
                json.WriteEndObject();
            }
            long offset = 0;
            var seen = new HashSet<string>(StringComparer.Ordinal) { MetadataKey };
            foreach (var (name, t) in list)
            {
                if (!seen.Add(name))
                {
                    throw new ArgumentException($"tensor name '{name}' is reserved or used twice", nameof(tensors));
                }
                var length = t.NumberOfElements * t.ElementSize;
                json.WriteStartObject(name);
                json.WriteString("dtype", DTypeName(t.dtype, name));
                json.WriteStartArray("shape");
                foreach (var d in t.shape)
                {
                    json.WriteNumberValue(d);
                }
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += length;
            }
            json.WriteEndObject();
        }
        // Readers that map the file may want the data section 8-byte aligned; the format pads
        // the header with spaces for that.
        while (header.Length % 8 != 0)
        {
            header.WriteByte((byte)' ');
        }

        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        stream.Write(prefix);
        header.Position = 0;
        header.CopyTo(stream);
        foreach (var (_, t) in list)
        {
            using var scope = NewDisposeScope();
            var contiguous = t.detach().cpu().contiguous();
            if (contiguous.NumberOfElements > 0)
            {
                stream.Write(contiguous.bytes);
            }
        }
    }

    /// <summary>Reads every tensor of a safetensors file; validates the header against the file size first.</summary>
    /// <exception cref="CheckpointException">The file is not a complete, well-formed safetensors file.</exception>
    /// <param name="expected">What the file should be, for error messages ("'x' is not EXPECTED: why").</param>
    public static Dictionary<string, Tensor> Read(string path, out Dictionary<string, string> metadata, string expected = "a valid safetensors file")
    {
        EnsureLittleEndian();
        var src = new Source(path, expected);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var (entries, meta, dataStart) = ReadHeader(stream, src);
        metadata = meta;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            var largest = entries.Count == 0 ? 0 : entries.Max(e => e.End - e.Begin);
            if (largest > Array.MaxLength)
            {
                throw Corrupt(src, $"a tensor of {largest} bytes is larger than this reader supports");
            }
            var buffer = new byte[largest];
            foreach (var e in entries)
            {
                var length = (int)(e.End - e.Begin);
                stream.Position = dataStart + e.Begin;
                stream.ReadExactly(buffer, 0, length);
                var t = empty(e.Shape, e.DType);
                result.Add(e.Name, t);
                if (length > 0)
                {
                    t.bytes = buffer.AsSpan(0, length);
                }
            }
            return result;
        }
        catch
        {
            foreach (var t in result.Values)
            {
                t.Dispose();
            }
            throw;
        }
    }

    private static (List<Entry> Entries, Dictionary<string, string> Metadata, long DataStart) ReadHeader(FileStream stream, Source path)
    {
        var fileLength = stream.Length;
        if (fileLength < 8)
        {
            throw Corrupt(path, $"the file has {fileLength} bytes, fewer than the 8-byte header length");
        }
        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)(fileLength - 8) || headerLength > MaxHeaderBytes)
        {
            throw Corrupt(path, $"the header length {headerLength} does not fit in a file of {fileLength} bytes");
        }
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        // The JSON reader accepts invalid UTF-8 inside strings and fails only when a name is read.
        if (!System.Text.Unicode.Utf8.IsValid(headerBytes))
        {
            throw Corrupt(path, "the header is not valid UTF-8");
        }
        var dataStart = 8 + (long)headerLength;
        var dataLength = fileLength - dataStart;

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(headerBytes);
        }
        catch (JsonException e)
        {
            throw Corrupt(path, $"the header is not valid JSON ({e.Message})");
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw Corrupt(path, "the header is not a JSON object");
            }
            var entries = new List<Entry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(prop.Name))
                {
                    throw Corrupt(path, $"tensor '{prop.Name}' appears twice in the header");
                }
                if (prop.Name == MetadataKey)
                {
                    ReadMetadata(prop.Value, metadata, path);
                    continue;
                }
                entries.Add(ReadEntry(prop, path));
            }

            // Like the reference implementation, require the tensors to tile the data section
            // exactly: no gaps, no overlaps, nothing after the last one. A truncated file fails here.
            long expected = 0;
            foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
            {
                if (e.Begin != expected)
                {
                    throw Corrupt(path, $"tensor '{e.Name}' starts at data offset {e.Begin}, expected {expected} (gap or overlap)");
                }
                expected = e.End;
            }
            if (expected != dataLength)
            {
                throw Corrupt(path, expected > dataLength
                    ? $"the header describes {expected} bytes of tensor data but the file holds {dataLength} (truncated?)"
                    : $"the file holds {dataLength - expected} bytes after the last tensor");
            }
            return (entries, metadata, dataStart);
        }
    }

    private static void ReadMetadata(JsonElement value, Dictionary<string, string> metadata, Source path)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Corrupt(path, $"'{MetadataKey}' is not a JSON object");
        }
        foreach (var m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
            {
                throw Corrupt(path, $"metadata '{m.Name}' is not a string");
            }
            metadata[m.Name] = m.Value.GetString()!;
        }
    }

    private static Entry ReadEntry(JsonProperty prop, Source path)
    {
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object
            || !v.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
        {
            throw Corrupt(path, $"tensor '{prop.Name}' lacks a string 'dtype', an array 'shape' or a two-element 'data_offsets'");
        }
        var dtype = ParseDType(dtypeEl.GetString()!) ?? throw Corrupt(path, $"tensor '{prop.Name}' has unsupported dtype '{dtypeEl.GetString()}'");
        var shape = new long[shapeEl.GetArrayLength()];
        var i = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out shape[i]) || shape[i] < 0)
            {
                throw Corrupt(path, $"tensor '{prop.Name}' has an invalid shape {shapeEl.GetRawText()}");
            }
            i++;
        }
        var begin = offEl[0];
        var end = offEl[1];
        if (begin.ValueKind != JsonValueKind.Number || end.ValueKind != JsonValueKind.Number
            || !begin.TryGetInt64(out var b) || !end.TryGetInt64(out var e) || b < 0 || e < b)
        {
            throw Corrupt(path, $"tensor '{prop.Name}' has invalid data_offsets {offEl.GetRawText()}");
        }
        long count = 1;
        try
        {
            foreach (var d in shape)
            {
                count = checked(count * d);
            }
            count = checked(count * ElementSize(dtype));
        }
        catch (OverflowException)
        {
            throw Corrupt(path, $"tensor '{prop.Name}' has an impossibly large shape {shapeEl.GetRawText()}");
        }
        if (count != e - b)
        {
            throw Corrupt(path, $"tensor '{prop.Name}' of shape {shapeEl.GetRawText()} and dtype {dtypeEl.GetString()} needs {count} bytes but data_offsets span {e - b}");
        }
        return new Entry(prop.Name, dtype, shape, b, e);
    }

    private static CheckpointException Corrupt(Source src, string what) =>
        new($"'{src.Path}' is not {src.Expected}: {what}", src.Path);

    private static void EnsureLittleEndian()
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian hosts are not supported");
        }
    }

    private static string DTypeName(ScalarType t, string name) => t switch
    {
        ScalarType.Float64 => "F64",
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Int16 => "I16",
        ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8",
        ScalarType.Bool => "BOOL",
        _ => throw new ArgumentException($"tensor '{name}' has dtype {t}, which safetensors cannot store"),
    };

    private static ScalarType? ParseDType(string s) => s switch
    {
        "F64" => ScalarType.Float64,
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        "I16" => ScalarType.Int16,
        "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte,
        "BOOL" => ScalarType.Bool,
        _ => null,
    };

    private static long ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };
}
