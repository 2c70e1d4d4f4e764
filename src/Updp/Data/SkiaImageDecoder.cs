using SkiaSharp;

namespace Updp.Data;

/// <summary>
/// Decodes JPEG, PNG, BMP, WebP and GIF (first frame) with SkiaSharp (Google's Skia, native;
/// libjpeg-turbo, libpng, libwebp), chosen by measurement (docs/BENCHMARKS.md, "Image decoders").
/// Like PIL's default loading, it ignores ICC profiles and EXIF orientation and drops alpha
/// without compositing; a truncated file is an error, not a partly grey image.
/// </summary>
public sealed class SkiaImageDecoder : IImageDecoder
{
    /// <inheritdoc/>
    public ImageHeader ReadHeader(string path)
    {
        using var stream = Open(path);
        using var codec = SKCodec.Create(stream, out var result);
        if (codec is not null)
        {
            return new ImageHeader(codec.Info.Width, codec.Info.Height);
        }

        // Skia refuses a PNG whose pixel data is missing; its size still decides the message.
        return PngSize(path) ?? throw new BadImageException(path, "not a readable JPEG, PNG, BMP, WebP or GIF file");
    }

    // Width and height from a PNG's IHDR chunk, which the format puts first: bytes 16–23, big-endian.
    private static ImageHeader? PngSize(string path)
    {
        Span<byte> head = stackalloc byte[24];
        using var stream = Open(path);
        if (stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) < head.Length
            || !head[..8].SequenceEqual((ReadOnlySpan<byte>)[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            || !head[12..16].SequenceEqual("IHDR"u8))
        {
            return null;
        }

        var width = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(head[16..]);
        var height = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(head[20..]);
        return width is 0 or > int.MaxValue || height is 0 or > int.MaxValue ? null : new ImageHeader((int)width, (int)height);
    }

    /// <inheritdoc/>
    public PixelImage DecodeRgb(string path)
    {
        using var stream = Open(path);
        using var codec = SKCodec.Create(stream, out var created)
            ?? throw new BadImageException(path, "not a readable JPEG, PNG, BMP, WebP or GIF file");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[info.BytesSize];
        var result = codec.GetPixels(info, rgba);
        if (result != SKCodecResult.Success)
        {
            throw new BadImageException(path, (result == SKCodecResult.IncompleteInput ? "the file is truncated" : "the image data is corrupt")
                + " (--skip-bad-images leaves such files out)");
        }

        var pixels = info.Width * info.Height;
        var rgb = new byte[pixels * 3];
        for (var i = 0; i < pixels; i++)
        {
            rgb[3 * i] = rgba[4 * i];
            rgb[(3 * i) + 1] = rgba[(4 * i) + 1];
            rgb[(3 * i) + 2] = rgba[(4 * i) + 2];
        }

        return new PixelImage(rgb, info.Height, info.Width, 3);
    }

    private static FileStream Open(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BadImageException(path, $"cannot be read: {e.Message}", e);
        }
    }
}
