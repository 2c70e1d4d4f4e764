using System.Buffers.Binary;
using System.IO.Compression;

namespace Updp.Data;

/// <summary>
/// Reads the big-endian idx files MNIST and Fashion-MNIST ship in, either raw or gzip-compressed.
/// Malformed files raise <see cref="InvalidDataException"/> whose message names the file and the
/// problem; a missing file raises <see cref="FileNotFoundException"/>.
/// </summary>
public static class IdxReader
{
    /// <summary>Magic number of an idx file holding unsigned bytes in three dimensions (images).</summary>
    public const int ImagesMagic = 0x00000803;

    /// <summary>Magic number of an idx file holding unsigned bytes in one dimension (labels).</summary>
    public const int LabelsMagic = 0x00000801;

    // First buffer for the body of a gzip-compressed file, whose real length is known only once read.
    private const int GrowFrom = 1 << 20;

    /// <summary>Reads an idx3 unsigned-byte image file (raw or gzip).</summary>
    /// <param name="path">Path of the file, for example <c>train-images-idx3-ubyte.gz</c>.</param>
    public static IdxImages ReadImages(string path)
    {
        using var stream = OpenMaybeGzip(path, "an idx3 images file such as train-images-idx3-ubyte or t10k-images-idx3-ubyte (optionally .gz)");
        var header = ReadHeader(stream, path, ImagesMagic, dimensionCount: 3);
        var (count, rows, cols) = (header[0], header[1], header[2]);
        if (rows == 0 || cols == 0)
        {
            throw new InvalidDataException($"Idx images file '{path}' declares images of {rows}x{cols} pixels; both sides must be positive.");
        }

        // Three 31-bit sizes can overflow a long; the product is checked before anything is allocated.
        var length = (Int128)count * rows * cols;
        if (length > Array.MaxLength)
        {
            throw new InvalidDataException(
                $"Idx file '{path}' declares {count} images of {rows}x{cols} pixels, {length} bytes, more than fits in memory as one array.");
        }

        var pixels = ReadBody(stream, path, (long)length, "pixel");
        return new IdxImages(pixels, count, rows, cols);
    }

    /// <summary>Reads an idx1 unsigned-byte label file (raw or gzip).</summary>
    /// <param name="path">Path of the file, for example <c>train-labels-idx1-ubyte.gz</c>.</param>
    /// <returns>One byte per image.</returns>
    public static byte[] ReadLabels(string path)
    {
        using var stream = OpenMaybeGzip(path, "an idx1 labels file such as train-labels-idx1-ubyte or t10k-labels-idx1-ubyte (optionally .gz)");
        var header = ReadHeader(stream, path, LabelsMagic, dimensionCount: 1);
        return ReadBody(stream, path, header[0], "label");
    }

    // The extension is not trusted: people gunzip files and keep the name, or the reverse.
    private static Stream OpenMaybeGzip(string path, string expectedDescription)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Idx file '{path}' not found; expected {expectedDescription}.", path);
        }

        RegularFile.Require(path, "idx file");
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        Span<byte> start = stackalloc byte[2];
        var startLength = file.ReadAtLeast(start, 2, throwOnEndOfStream: false);
        file.Position = 0;
        if (startLength == 2 && start[0] == 0x1f && start[1] == 0x8b)
        {
            return new GZipStream(file, CompressionMode.Decompress, leaveOpen: false);
        }

        return file;
    }

    private static int[] ReadHeader(Stream stream, string path, int expectedMagic, int dimensionCount)
    {
        var headerLength = 4 + (4 * dimensionCount);
        var header = new byte[headerLength];

        // The magic is checked before the rest of the header is required, so that a labels file
        // passed as images (whose whole content may be shorter than an images header) is reported
        // as the wrong kind of file rather than as truncated.
        var got = ReadFully(stream, path, header.AsSpan(0, 4));
        if (got == 4)
        {
            var magic = BinaryPrimitives.ReadInt32BigEndian(header);
            if (magic != expectedMagic)
            {
                throw new InvalidDataException(
                    $"Idx file '{path}' has wrong magic number 0x{magic:X8}, expected 0x{expectedMagic:X8} ({Describe(expectedMagic)}){Hint(magic)}.");
            }

            got += ReadFully(stream, path, header.AsSpan(4));
        }

        if (got < headerLength)
        {
            throw new InvalidDataException($"Idx file '{path}' is truncated: expected a {headerLength}-byte header, got {got} bytes.");
        }

        var dimensions = new int[dimensionCount];
        for (var i = 0; i < dimensionCount; i++)
        {
            var size = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4 + (4 * i)));
            if (size > int.MaxValue)
            {
                throw new InvalidDataException($"Idx file '{path}' declares dimension {i} of size {size}, which is implausibly large.");
            }

            dimensions[i] = (int)size;
        }

        return dimensions;
    }

    private static byte[] ReadBody(Stream stream, string path, long expectedLength, string itemName)
    {
        if (expectedLength > Array.MaxLength)
        {
            throw new InvalidDataException($"Idx file '{path}' declares {expectedLength} bytes of {itemName} data, more than fits in memory as one array.");
        }

        // The header's sizes are not trusted with an allocation: a raw file's must fit in what is left
        // of it, and a gzip stream's buffer grows only as its data arrives.
        byte[] body;
        long got;
        if (stream.CanSeek)
        {
            got = Math.Min(expectedLength, stream.Length - stream.Position);
            body = got < expectedLength ? [] : new byte[expectedLength];
            if (body.Length > 0)
            {
                got = ReadFully(stream, path, body);
            }
        }
        else
        {
            body = new byte[Math.Min(expectedLength, GrowFrom)];
            got = ReadFully(stream, path, body);
            while (got == body.Length && body.Length < expectedLength)
            {
                Array.Resize(ref body, (int)Math.Min(expectedLength, 2L * body.Length));
                got += ReadFully(stream, path, body.AsSpan((int)got));
            }
        }

        if (got < expectedLength)
        {
            throw new InvalidDataException($"Idx file '{path}' is truncated: expected {expectedLength} bytes of {itemName} data after the header, got {got}.");
        }

        // Trailing bytes mean the header's sizes do not describe the file, so the data is suspect.
        Span<byte> probe = stackalloc byte[1];
        if (ReadFully(stream, path, probe) != 0)
        {
            throw new InvalidDataException($"Idx file '{path}' has data after the {expectedLength} bytes of {itemName} data its header declares.");
        }

        return body;
    }

    private static int ReadFully(Stream stream, string path, Span<byte> buffer)
    {
        try
        {
            return stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        }
        catch (InvalidDataException e)
        {
            // GZipStream's own message does not say which file is broken.
            throw new InvalidDataException($"Idx file '{path}' is not a valid gzip stream: {e.Message}", e);
        }
    }

    private static string Describe(int magic) => magic switch
    {
        ImagesMagic => "unsigned-byte images, 3 dimensions",
        LabelsMagic => "unsigned-byte labels, 1 dimension",
        _ => "unknown",
    };

    private static string Hint(int magic) => magic switch
    {
        ImagesMagic => "; this looks like an images file",
        LabelsMagic => "; this looks like a labels file",
        _ => "",
    };
}
