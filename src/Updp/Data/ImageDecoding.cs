namespace Updp.Data;

/// <summary>An image file's format and size, read from its header without decoding pixels.</summary>
/// <param name="Width">Columns.</param>
/// <param name="Height">Rows.</param>
public readonly record struct ImageHeader(int Width, int Height);

/// <summary>Reads image files into 8-bit pixels. Implementations are safe to call from several threads.</summary>
public interface IImageDecoder
{
    /// <summary>Width and height from the file's header, without decoding the pixels.</summary>
    /// <exception cref="BadImageException">The file is not an image this decoder reads.</exception>
    ImageHeader ReadHeader(string path);

    /// <summary>
    /// Decodes the file to RGB (3 channels) with alpha dropped and palettes expanded, as PIL's
    /// <c>convert("RGB")</c> does.
    /// </summary>
    /// <exception cref="BadImageException">The file cannot be decoded.</exception>
    PixelImage DecodeRgb(string path);
}

/// <summary>
/// What every decode goes through: the size check on the header before any pixel is decoded (a
/// 30,000 × 30,000 PNG header is refused without allocating its 2.7 GB), and the conversion to the
/// model's channels.
/// </summary>
public sealed record ImageReader
{
    /// <summary>Smallest accepted side: smaller images carry no usable content.</summary>
    public const int DefaultMinSide = 8;

    /// <summary>Largest accepted image in pixels (PIL's decompression-bomb limit, 2³⁰ / 4 / 3).</summary>
    public const long DefaultMaxPixels = 89_478_485;

    /// <summary>The decoder the tool uses.</summary>
    public static ImageReader Default { get; } = new();

    /// <summary>The library that decodes.</summary>
    public IImageDecoder Decoder { get; init; } = new SkiaImageDecoder();

    /// <summary>Images with a side shorter than this are refused.</summary>
    public int MinSide { get; init; } = DefaultMinSide;

    /// <summary>Images with more pixels than this are refused before decoding.</summary>
    public long MaxPixels { get; init; } = DefaultMaxPixels;

    /// <summary>Reads the header and throws unless the size is within the limits.</summary>
    /// <exception cref="BadImageException">Not an image, or of a refused size.</exception>
    public ImageHeader CheckHeader(string path)
    {
        RequireRegularFile(path);
        var header = Decoder.ReadHeader(path);
        if (header.Width < MinSide || header.Height < MinSide)
        {
            throw new BadImageException(path, $"{header.Width}x{header.Height} pixels is too small (each side must be at least {MinSide})");
        }

        if ((long)header.Width * header.Height > MaxPixels)
        {
            throw new BadImageException(path,
                $"{header.Width}x{header.Height} pixels is too large (at most {MaxPixels:N0} pixels; refused before decoding)");
        }

        return header;
    }

    /// <summary>
    /// Decodes <paramref name="path"/> to <paramref name="channels"/> channels: RGB, or for 1 the
    /// luma PIL's <c>convert("L")</c> computes (ITU-R 601-2, L = (19595 R + 38470 G + 7471 B + 2¹⁵) ≫ 16).
    /// </summary>
    /// <exception cref="BadImageException">The file cannot be used.</exception>
    public PixelImage Read(string path, int channels)
    {
        if (channels is not (1 or 3))
        {
            throw new ArgumentOutOfRangeException(nameof(channels), channels, "images are read with 1 or 3 channels");
        }

        CheckHeader(path);
        var rgb = Decoder.DecodeRgb(path);
        return channels == 3 ? rgb : ToGray(rgb);
    }

    /// <summary>
    /// Throws unless <paramref name="path"/> is (a link to) a non-empty regular file: a named pipe
    /// or a device reports length 0 and would block or never end when read, and an empty file is no image.
    /// </summary>
    /// <exception cref="BadImageException">Missing, a folder, or empty / not a regular file.</exception>
    public static void RequireRegularFile(string path)
    {
        if (RegularFile.Check(path) is { } problem)
        {
            throw new BadImageException(path, RegularFile.Describe(problem, "an image file"));
        }
    }

    /// <summary>PIL's RGB → L conversion.</summary>
    public static PixelImage ToGray(PixelImage rgb)
    {
        if (rgb.Channels == 1)
        {
            return rgb;
        }

        var source = rgb.Pixels.Span;
        var gray = new byte[rgb.Height * rgb.Width];
        for (var i = 0; i < gray.Length; i++)
        {
            gray[i] = (byte)(((source[3 * i] * 19595) + (source[(3 * i) + 1] * 38470) + (source[(3 * i) + 2] * 7471) + 0x8000) >> 16);
        }

        return new PixelImage(gray, rgb.Height, rgb.Width, 1);
    }
}
