using StbImageSharp;

namespace Updp.Data;

/// <summary>Decodes PNG, JPEG, BMP, GIF and TGA with StbImageSharp (managed C#, no native library).</summary>
public sealed class StbImageDecoder : IImageDecoder
{
    /// <inheritdoc/>
    public ImageHeader ReadHeader(string path)
    {
        using var stream = Open(path);
        var info = Guard(path, () => ImageInfo.FromStream(stream))
            ?? throw new BadImageException(path, "not a PNG, JPEG, BMP, GIF or TGA file");
        return new ImageHeader(info.Width, info.Height);
    }

    /// <inheritdoc/>
    public PixelImage DecodeRgb(string path)
    {
        using var stream = Open(path);
        var image = Guard(path, () => ImageResult.FromStream(stream, ColorComponents.RedGreenBlue));
        return new PixelImage(image.Data, image.Height, image.Width, 3);
    }

    private static FileStream Open(string path)
    {
        try
        {
            return File.OpenRead(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BadImageException(path, $"cannot be read: {e.Message}", e);
        }
    }

    private static T Guard<T>(string path, Func<T> decode)
    {
        try
        {
            return decode();
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IndexOutOfRangeException or NotSupportedException
            or InvalidDataException or IOException or OverflowException or NullReferenceException)
        {
            throw new BadImageException(path, $"cannot be decoded ({e.Message})", e);
        }
    }
}
