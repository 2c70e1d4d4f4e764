using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using System.Text;

namespace Updp.Checkpoints;

/// <summary>
/// Checks the members of a zip archive (PyTorch's checkpoint format) against the CRC-32 and sizes its
/// central directory records for them. .NET's <see cref="ZipArchive"/>, through which
/// TorchSharp.PyBridge reads checkpoints, checks neither, so without this a damaged .pth loads silently.
/// Every failure is a <see cref="CheckpointException"/> naming the file (and the member, when there is one).
/// </summary>
internal static class ZipIntegrity
{
    /// <summary>One member as the central directory describes it.</summary>
    internal sealed record Member(string Name, int Method, int Flags, uint Crc32, long CompressedSize, long Size, long LocalHeaderOffset);

    /// <summary>The members and where the central directory starts (member data must lie before it).</summary>
    internal sealed record CentralDirectory(IReadOnlyList<Member> Members, long CentralDirectoryOffset);

    private const uint LocalHeaderSignature = 0x04034b50;
    private const uint CentralHeaderSignature = 0x02014b50;
    private const uint EndSignature = 0x06054b50;
    private const uint Zip64EndSignature = 0x06064b50;
    private const uint Zip64LocatorSignature = 0x07064b50;
    private const int EndLength = 22;
    private const int Zip64EndLength = 56;
    private const int Zip64LocatorLength = 20;
    private const int CentralHeaderLength = 46;
    private const int LocalHeaderLength = 30;
    private const int Stored = 0;
    private const int Deflated = 8;

    // A state dict of 100,000 tensors has a central directory of a few MB; a corrupt size field must
    // not make us allocate gigabytes before anything is checked.
    private const long MaxCentralDirectoryBytes = 256L << 20;

    private const int BufferSize = 1 << 20;

    // A state dict's pickle is a few hundred bytes per tensor; the tensors themselves are members of their own.
    private const long MaxPickleBytes = 1L << 30;

    /// <summary>Reads the central directory (zip64 included) and checks that it is consistent with the file's length.</summary>
    public static CentralDirectory ReadDirectory(Stream stream, string path)
    {
        var fileLength = stream.Length;
        if (fileLength < EndLength)
        {
            throw Invalid(path, $"it has {fileLength} bytes, too few for a zip archive");
        }
        // The end record sits in the last 22 bytes plus up to 64 KiB of archive comment.
        var tailLength = (int)Math.Min(fileLength, EndLength + ushort.MaxValue);
        var tail = new byte[tailLength];
        ReadAt(stream, fileLength - tailLength, tail);
        var end = -1;
        for (var i = tailLength - EndLength; i >= 0; i--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(i)) == EndSignature)
            {
                end = i;
                break;
            }
        }
        if (end < 0)
        {
            throw Invalid(path, "it has no end-of-central-directory record");
        }
        var endOffset = fileLength - tailLength + end;
        var record = tail.AsSpan(end);
        long count = BinaryPrimitives.ReadUInt16LittleEndian(record[10..]);
        long size = BinaryPrimitives.ReadUInt32LittleEndian(record[12..]);
        long offset = BinaryPrimitives.ReadUInt32LittleEndian(record[16..]);
        var directoryEnd = endOffset;
        if (count == ushort.MaxValue || size == uint.MaxValue || offset == uint.MaxValue)
        {
            // ZIP64: a locator just before the end record points at the zip64 end record.
            if (endOffset < Zip64LocatorLength)
            {
                throw Invalid(path, "its end record needs a zip64 record, and there is none");
            }
            var locator = new byte[Zip64LocatorLength];
            ReadAt(stream, endOffset - Zip64LocatorLength, locator);
            if (BinaryPrimitives.ReadUInt32LittleEndian(locator) != Zip64LocatorSignature)
            {
                throw Invalid(path, "its end record needs a zip64 record, and there is no zip64 locator");
            }
            var zip64Offset = BinaryPrimitives.ReadUInt64LittleEndian(locator.AsSpan(8));
            if (zip64Offset > (ulong)(endOffset - Zip64LocatorLength - Zip64EndLength))
            {
                throw Invalid(path, $"its zip64 end record offset {zip64Offset} lies outside the file");
            }
            var zip64 = new byte[Zip64EndLength];
            ReadAt(stream, (long)zip64Offset, zip64);
            if (BinaryPrimitives.ReadUInt32LittleEndian(zip64) != Zip64EndSignature)
            {
                throw Invalid(path, $"there is no zip64 end record at offset {zip64Offset}");
            }
            count = Clamp(BinaryPrimitives.ReadUInt64LittleEndian(zip64.AsSpan(32)));
            size = Clamp(BinaryPrimitives.ReadUInt64LittleEndian(zip64.AsSpan(40)));
            offset = Clamp(BinaryPrimitives.ReadUInt64LittleEndian(zip64.AsSpan(48)));
            directoryEnd = (long)zip64Offset;
        }
        if (offset > directoryEnd || size > directoryEnd - offset)
        {
            throw Invalid(path, $"its central directory ({size} bytes at offset {offset}) does not fit before its end record at {directoryEnd}");
        }
        if (size > MaxCentralDirectoryBytes)
        {
            throw Invalid(path, $"its central directory of {size} bytes is larger than this reader accepts ({MaxCentralDirectoryBytes})");
        }
        if (count > size / CentralHeaderLength)
        {
            throw Invalid(path, $"it claims {count} members in a central directory of {size} bytes");
        }

        var directory = new byte[size];
        ReadAt(stream, offset, directory);
        var members = new List<Member>((int)count);
        var at = 0;
        for (var i = 0; i < count; i++)
        {
            members.Add(ReadCentralHeader(directory, ref at, offset, path));
        }
        if (at != directory.Length)
        {
            throw Invalid(path, $"its central directory has {directory.Length - at} bytes after the {count} members its end record announces");
        }
        return new CentralDirectory(members, offset);
    }

    private static Member ReadCentralHeader(byte[] directory, ref int at, long directoryOffset, string path)
    {
        var where = directoryOffset + at;
        if (directory.Length - at < CentralHeaderLength || BinaryPrimitives.ReadUInt32LittleEndian(directory.AsSpan(at)) != CentralHeaderSignature)
        {
            throw Invalid(path, $"there is no central directory header at offset {where}");
        }
        var h = directory.AsSpan(at, CentralHeaderLength);
        var flags = (int)BinaryPrimitives.ReadUInt16LittleEndian(h[8..]);
        var method = (int)BinaryPrimitives.ReadUInt16LittleEndian(h[10..]);
        var crc = BinaryPrimitives.ReadUInt32LittleEndian(h[16..]);
        long compressed = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]);
        long size = BinaryPrimitives.ReadUInt32LittleEndian(h[24..]);
        var nameLength = (int)BinaryPrimitives.ReadUInt16LittleEndian(h[28..]);
        var extraLength = (int)BinaryPrimitives.ReadUInt16LittleEndian(h[30..]);
        var commentLength = (int)BinaryPrimitives.ReadUInt16LittleEndian(h[32..]);
        long localOffset = BinaryPrimitives.ReadUInt32LittleEndian(h[42..]);
        var variable = nameLength + extraLength + commentLength;
        if (directory.Length - at - CentralHeaderLength < variable)
        {
            throw Invalid(path, $"the central directory header at offset {where} runs past the end of the central directory");
        }
        var nameBytes = directory.AsSpan(at + CentralHeaderLength, nameLength);
        // Bit 11: the name is UTF-8; otherwise code page 437, which agrees with UTF-8 on the ASCII names PyTorch writes.
        var name = (flags & 0x800) != 0 ? Encoding.UTF8.GetString(nameBytes) : Encoding.Latin1.GetString(nameBytes);
        var extra = directory.AsSpan(at + CentralHeaderLength + nameLength, extraLength);
        if (size == uint.MaxValue || compressed == uint.MaxValue || localOffset == uint.MaxValue)
        {
            ReadZip64Extra(extra, ref size, ref compressed, ref localOffset, name, path);
        }
        at += CentralHeaderLength + variable;
        return new Member(name, method, flags, crc, compressed, size, localOffset);
    }

    // The zip64 extra field holds, in this order, those of the sizes and offset whose 32-bit fields are saturated.
    private static void ReadZip64Extra(ReadOnlySpan<byte> extra, ref long size, ref long compressed, ref long localOffset, string name, string path)
    {
        while (extra.Length >= 4)
        {
            var id = BinaryPrimitives.ReadUInt16LittleEndian(extra);
            var length = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
            if (length > extra.Length - 4)
            {
                break;
            }
            var data = extra.Slice(4, length);
            if (id == 1)
            {
                var needed = (size == uint.MaxValue ? 8 : 0) + (compressed == uint.MaxValue ? 8 : 0) + (localOffset == uint.MaxValue ? 8 : 0);
                if (data.Length < needed)
                {
                    throw Invalid(path, $"member '{name}' has a zip64 extra field of {data.Length} bytes, too short for the {needed} it needs");
                }
                var i = 0;
                if (size == uint.MaxValue)
                {
                    size = Clamp(BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
                    i += 8;
                }
                if (compressed == uint.MaxValue)
                {
                    compressed = Clamp(BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
                    i += 8;
                }
                if (localOffset == uint.MaxValue)
                {
                    localOffset = Clamp(BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
                }
                return;
            }
            extra = extra[(4 + length)..];
        }
        throw Invalid(path, $"member '{name}' needs a zip64 extra field for its sizes or offset, and has none");
    }

    /// <summary>
    /// Reads <paramref name="members"/> from <paramref name="path"/> (in file order, on a stream of
    /// its own) and checks each one's size and CRC-32 against the central directory.
    /// </summary>
    /// <exception cref="CheckpointException">A member is damaged, or is stored in a way this reader does not handle.</exception>
    public static void Verify(string path, CentralDirectory directory, IEnumerable<Member> members)
    {
        var ordered = members.OrderBy(m => m.LocalHeaderOffset).ToList();
        if (ordered.Count == 0)
        {
            return;
        }
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
            foreach (var m in ordered)
            {
                Verify(stream, path, directory, m, buffer);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Checks a pickle member as <see cref="Verify(string, CentralDirectory, IEnumerable{Member})"/> does
    /// and then its opcodes (<see cref="PickleGuard"/>), before the unpickler trusts any length in it.
    /// </summary>
    public static void VerifyPickle(string path, CentralDirectory directory, Member m)
    {
        if (m.Size > MaxPickleBytes)
        {
            throw Damaged(path, m, $"is a pickle of {m.Size} bytes, larger than this reader accepts ({MaxPickleBytes})");
        }
        var buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
            var pickle = new MemoryStream((int)m.Size);
            Verify(stream, path, directory, m, buffer, pickle);
            PickleGuard.Check(pickle.GetBuffer().AsSpan(0, (int)pickle.Length), path, m.Name);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static void Verify(FileStream stream, string path, CentralDirectory directory, Member m, byte[] buffer, MemoryStream? copy = null)
    {
        if ((m.Flags & 1) != 0)
        {
            throw Damaged(path, m, "is encrypted");
        }
        if (m.Method is not (Stored or Deflated))
        {
            throw Damaged(path, m, $"uses compression method {m.Method}; PyTorch stores members uncompressed");
        }
        if (m.Method == Stored && m.CompressedSize != m.Size)
        {
            throw Damaged(path, m, $"is stored uncompressed, yet the zip gives it {m.CompressedSize} bytes stored and {m.Size} bytes of data");
        }
        if (m.LocalHeaderOffset > directory.CentralDirectoryOffset - LocalHeaderLength)
        {
            throw Damaged(path, m, $"has its local header at offset {m.LocalHeaderOffset}, past the start of the central directory");
        }
        var header = buffer.AsSpan(0, LocalHeaderLength);
        ReadAt(stream, m.LocalHeaderOffset, header);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != LocalHeaderSignature)
        {
            throw Damaged(path, m, $"has no local header at offset {m.LocalHeaderOffset}");
        }
        // Without a data descriptor (flag bit 3) the local header repeats the CRC and sizes; they must agree.
        if ((m.Flags & 8) == 0)
        {
            var localCrc = BinaryPrimitives.ReadUInt32LittleEndian(header[14..]);
            var localCompressed = BinaryPrimitives.ReadUInt32LittleEndian(header[18..]);
            var localSize = BinaryPrimitives.ReadUInt32LittleEndian(header[22..]);
            if (localCrc != m.Crc32
                || (localCompressed != uint.MaxValue && localCompressed != m.CompressedSize)
                || (localSize != uint.MaxValue && localSize != m.Size))
            {
                throw Damaged(path, m, $"has a local header (CRC 0x{localCrc:x8}, {localCompressed} bytes stored, {localSize} bytes) that disagrees with the central directory (CRC 0x{m.Crc32:x8}, {m.CompressedSize} bytes stored, {m.Size} bytes)");
            }
        }
        var dataStart = m.LocalHeaderOffset + LocalHeaderLength
            + BinaryPrimitives.ReadUInt16LittleEndian(header[26..]) + BinaryPrimitives.ReadUInt16LittleEndian(header[28..]);
        if (dataStart > directory.CentralDirectoryOffset || m.CompressedSize > directory.CentralDirectoryOffset - dataStart)
        {
            throw Damaged(path, m, $"has {m.CompressedSize} bytes at offset {dataStart}, which run into the central directory at {directory.CentralDirectoryOffset}");
        }

        stream.Position = dataStart;
        var crc = new Crc32();
        long got = 0;
        if (m.Method == Stored)
        {
            while (got < m.Size)
            {
                var n = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, m.Size - got));
                if (n == 0)
                {
                    throw Damaged(path, m, $"ends after {got} of its {m.Size} bytes");
                }
                crc.Append(buffer.AsSpan(0, n));
                copy?.Write(buffer, 0, n);
                got += n;
            }
        }
        else
        {
            try
            {
                using var deflate = new DeflateStream(new Window(stream, m.CompressedSize), CompressionMode.Decompress);
                int n;
                // One byte past the declared size is enough to tell that there is too much.
                while (got <= m.Size && (n = deflate.Read(buffer, 0, (int)Math.Min(buffer.Length, m.Size - got + 1))) > 0)
                {
                    crc.Append(buffer.AsSpan(0, n));
                    copy?.Write(buffer, 0, n);
                    got += n;
                }
            }
            catch (InvalidDataException e)
            {
                throw Damaged(path, m, $"is not valid deflate data ({e.Message})");
            }
            if (got != m.Size)
            {
                throw Damaged(path, m, got > m.Size ? $"holds more than the {m.Size} bytes the zip says" : $"holds {got} bytes, but the zip says {m.Size}");
            }
        }
        var actual = crc.GetCurrentHashAsUInt32();
        if (actual != m.Crc32)
        {
            throw Damaged(path, m, $"fails its CRC check (zip says 0x{m.Crc32:x8}, data gives 0x{actual:x8})");
        }
    }

    private static void ReadAt(Stream stream, long offset, Span<byte> into)
    {
        stream.Position = offset;
        stream.ReadExactly(into);
    }

    // Sizes and offsets above long.MaxValue cannot be real; as long.MaxValue they fail the range checks.
    private static long Clamp(ulong v) => v > long.MaxValue ? long.MaxValue : (long)v;

    private static CheckpointException Invalid(string path, string why) =>
        new($"'{path}' is not a valid PyTorch checkpoint (zip archive): {why}", path);

    private static CheckpointException Damaged(string path, Member m, string what) =>
        new($"'{path}': member '{m.Name}' {what}", path);

    /// <summary>A read-only window of <paramref name="length"/> bytes from the stream's current position.</summary>
    private sealed class Window(Stream inner, long length) : Stream
    {
        private long _left = length;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_left <= 0)
            {
                return 0;
            }
            var n = inner.Read(buffer[..(int)Math.Min(buffer.Length, _left)]);
            _left -= n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
