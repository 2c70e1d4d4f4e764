using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Security.Cryptography;
using System.Text;

namespace Updp.Data;

/// <summary>
/// A set's images decoded once and stored as raw uint8 pixels in one memory-mapped file, so the
/// epochs after the first decode nothing. Each image is stored resized so its shorter side is the
/// evaluation resize (⌊T / crop_pct⌋): evaluation then only crops, exactly as from the file, and
/// training's random resized crop starts from that image instead of the full-size one (timm's and
/// FFCV's practice for cached data). The file's name is a hash of the source files (path, size,
/// modification time), the stored side, channels and filter, so any change to them makes a new
/// cache and the old one is removed. One file per set of files (train and validation each have theirs).
/// </summary>
public sealed class DecodedImageCache : IDisposable
{
    private const string Magic = "UPDPIMG1";
    private const int EntryBytes = 8 + 4 + 4 + 4;

    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly long[] _offsets;
    private readonly int[] _heights;
    private readonly int[] _widths;

    private DecodedImageCache(string path, int channels, long[] offsets, int[] heights, int[] widths)
    {
        FilePath = path;
        Channels = channels;
        _offsets = offsets;
        _heights = heights;
        _widths = widths;
        _file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        _view = _file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
    }

    /// <summary>The cache file.</summary>
    public string FilePath { get; }

    /// <summary>Channels of every stored image.</summary>
    public int Channels { get; }

    /// <summary>Images stored, in the set's order.</summary>
    public int Count => _offsets.Length;

    /// <summary>Whether image <paramref name="index"/> could not be decoded when the cache was built (skipped).</summary>
    public bool IsMissing(int index) => _offsets[index] < 0;

    /// <summary>Image <paramref name="index"/>, copied out of the mapped file.</summary>
    public PixelImage Get(int index)
    {
        if (_offsets[index] < 0)
        {
            throw new InvalidOperationException($"image {index} could not be decoded when the cache {FilePath} was built");
        }

        var pixels = new byte[_heights[index] * _widths[index] * Channels];
        _view.ReadArray(_offsets[index], pixels, 0, pixels.Length);
        return new PixelImage(pixels, _heights[index], _widths[index], Channels);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _view.Dispose();
        _file.Dispose();
    }

    /// <summary>
    /// Opens the cache of <paramref name="set"/> in <paramref name="directory"/>, building it first
    /// when it is missing or stale. Building decodes every image once, in parallel; an image that
    /// cannot be decoded throws <see cref="BadImageException"/>, or with <paramref name="skipBad"/>
    /// is recorded as missing (<see cref="IsMissing"/>).
    /// </summary>
    /// <param name="set">The images, in order.</param>
    /// <param name="directory">Where cache files live (created when missing).</param>
    /// <param name="shorterSide">Side the shorter side of every image is resized to; null stores images at their own size.</param>
    /// <param name="channels">1 or 3.</param>
    /// <param name="interpolation">Filter of that resize.</param>
    /// <param name="skipBad">Record undecodable images as missing instead of failing.</param>
    /// <param name="progress">Receives (images done, images in all) while building.</param>
    public static DecodedImageCache OpenOrBuild(ImageFileSet set, string directory, int? shorterSide, int channels, Interpolation interpolation,
        bool skipBad = false, IProgress<(int Done, int Total)>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(set);
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(shorterSide ?? 1);
        Directory.CreateDirectory(directory);
        var (prefix, key) = Key(set, shorterSide, channels, interpolation);
        var path = Path.Combine(directory, $"{prefix}-{key}.bin");
        if (File.Exists(path) && TryOpen(path, set.Count, channels) is { } existing)
        {
            return existing;
        }

        Build(set, path, shorterSide, channels, interpolation, skipBad, progress);
        foreach (var stale in Directory.EnumerateFiles(directory, $"{prefix}-*.bin").Where(f => f != path))
        {
            AtomicFile.TryDelete(stale);
        }

        return TryOpen(path, set.Count, channels) ?? throw new InvalidDataException($"the cache file '{path}' just written cannot be read back");
    }

    // The prefix names the set (its origin); the key covers everything the pixels depend on.
    private static (string Prefix, string Key) Key(ImageFileSet set, int? shorterSide, int channels, Interpolation interpolation)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Add(string text) => hash.AppendData(Encoding.UTF8.GetBytes(text + "\n"));
        Add($"{Magic} side={shorterSide?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "original"} channels={channels} filter={interpolation} count={set.Count}");
        foreach (var path in set.Paths)
        {
            var info = new FileInfo(path);
            Add($"{Path.GetFullPath(path)}|{(info.Exists ? info.Length : -1)}|{(info.Exists ? info.LastWriteTimeUtc.Ticks : 0)}");
        }

        var key = Convert.ToHexString(hash.GetHashAndReset())[..16].ToLowerInvariant();

        // The set is its ordered list of files: a cache of the same files with other contents or
        // settings is stale and replaced; another set (train and val of one folder) keeps its own.
        var names = string.Join("\n", set.Paths.Select(Path.GetFullPath));
        var prefix = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(names)))[..12].ToLowerInvariant();
        return (prefix, key);
    }

    private static void Build(ImageFileSet set, string path, int? shorterSide, int channels, Interpolation interpolation, bool skipBad,
        IProgress<(int Done, int Total)>? progress)
    {
        var count = set.Count;
        var offsets = new long[count];
        var heights = new int[count];
        var widths = new int[count];
        var headerLength = Magic.Length + 8 + ((long)count * EntryBytes);
        AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[headerLength]);
            var position = headerLength;

            // Chunks are decoded in parallel and written in order, so the file does not depend on timing.
            const int chunk = 64;
            var done = 0;
            for (var start = 0; start < count; start += chunk)
            {
                var n = Math.Min(chunk, count - start);
                var decoded = new PixelImage?[n];
                try
                {
                    DecodeChunk(set, start, n, decoded, shorterSide, channels, interpolation, skipBad);
                }
                catch (AggregateException e) when (e.InnerExceptions.Count > 0)
                {
                    // The first failure, as it is: a bad image names its file.
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
                }

                for (var i = 0; i < n; i++)
                {
                    if (decoded[i] is not { } image)
                    {
                        offsets[start + i] = -1;
                        continue;
                    }

                    offsets[start + i] = position;
                    heights[start + i] = image.Height;
                    widths[start + i] = image.Width;
                    stream.Write(image.Pixels.Span);
                    position += image.Pixels.Length;
                }

                done += n;
                progress?.Report((done, count));
            }

            stream.Position = 0;
            var header = new byte[headerLength];
            Encoding.ASCII.GetBytes(Magic).CopyTo(header, 0);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(Magic.Length), count);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(Magic.Length + 4), channels);
            for (var i = 0; i < count; i++)
            {
                var entry = header.AsSpan(Magic.Length + 8 + (i * EntryBytes), EntryBytes);
                BinaryPrimitives.WriteInt64LittleEndian(entry, offsets[i]);
                BinaryPrimitives.WriteInt32LittleEndian(entry[8..], heights[i]);
                BinaryPrimitives.WriteInt32LittleEndian(entry[12..], widths[i]);
                BinaryPrimitives.WriteInt32LittleEndian(entry[16..], channels);
            }

            stream.Write(header);
        });
    }

    private static void DecodeChunk(ImageFileSet set, int start, int n, PixelImage?[] decoded, int? shorterSide, int channels,
        Interpolation interpolation, bool skipBad)
    {
        Parallel.For(0, n, i =>
        {
            try
            {
                var image = set.Reader.Read(set.PathOf(start + i), 3).ToChannels(channels);
                var (w, h) = shorterSide is int side ? ResizeCropTransform.ShorterSideTo(image.Width, image.Height, side) : (image.Width, image.Height);
                decoded[i] = w == image.Width && h == image.Height
                    ? image
                    : new PixelImage(Resampling.Resize(image, w, h, interpolation), h, w, channels);
            }
            catch (BadImageException) when (skipBad)
            {
                decoded[i] = null;
            }
        });
    }

    // Null when the file is not a complete cache of `count` images with `channels` channels.
    private static DecodedImageCache? TryOpen(string path, int count, int channels)
    {
        var length = new FileInfo(path).Length;
        using var stream = File.OpenRead(path);
        var head = new byte[Magic.Length + 8];
        if (stream.Read(head) != head.Length || Encoding.ASCII.GetString(head, 0, Magic.Length) != Magic
            || BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(Magic.Length)) != count
            || BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(Magic.Length + 4)) != channels)
        {
            return null;
        }

        var entries = new byte[(long)count * EntryBytes];
        if (stream.Read(entries) != entries.Length)
        {
            return null;
        }

        var offsets = new long[count];
        var heights = new int[count];
        var widths = new int[count];
        for (var i = 0; i < count; i++)
        {
            var entry = entries.AsSpan(i * EntryBytes, EntryBytes);
            offsets[i] = BinaryPrimitives.ReadInt64LittleEndian(entry);
            heights[i] = BinaryPrimitives.ReadInt32LittleEndian(entry[8..]);
            widths[i] = BinaryPrimitives.ReadInt32LittleEndian(entry[12..]);
            if (offsets[i] >= 0 && (heights[i] < 1 || widths[i] < 1 || offsets[i] + ((long)heights[i] * widths[i] * channels) > length))
            {
                return null;
            }
        }

        return new DecodedImageCache(path, channels, offsets, heights, widths);
    }
}
