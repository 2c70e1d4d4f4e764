using StbImageSharp;

namespace Updp.Data;

/// <summary>Reads PNG, JPEG, BMP, GIF or TGA files as grayscale images of the size a model was trained on.</summary>
public static class ImageFiles
{
    /// <summary>
    /// Decodes <paramref name="path"/> to 8-bit grayscale and resizes it (bilinear) to size×size.
    /// Pixels are used as they are: Fashion-MNIST images are light objects on a black background.
    /// </summary>
    public static byte[] ReadGrayscale(string path, int size)
    {
        ImageReader.RequireRegularFile(path);
        ImageReader.Default.CheckHeader(path);
        ImageResult image;
        try
        {
            using var stream = File.OpenRead(path);
            image = ImageResult.FromStream(stream, ColorComponents.Grey);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IndexOutOfRangeException or NotSupportedException or InvalidDataException)
        {
            throw new InvalidDataException($"cannot decode image '{path}' (expected PNG, JPEG, BMP, GIF or TGA): {e.Message}", e);
        }
        return image.Width == size && image.Height == size ? image.Data : ResizeBilinear(image.Data, image.Width, image.Height, size);
    }

    /// <summary>Bilinear resampling with half-pixel centres (as PyTorch's align_corners=False).</summary>
    public static byte[] ResizeBilinear(byte[] pixels, int width, int height, int size)
    {
        var result = new byte[size * size];
        for (var y = 0; y < size; y++)
        {
            var sy = Math.Clamp(((y + 0.5) * height / size) - 0.5, 0, height - 1);
            int y0 = (int)sy, y1 = Math.Min(y0 + 1, height - 1);
            var fy = sy - y0;
            for (var x = 0; x < size; x++)
            {
                var sx = Math.Clamp(((x + 0.5) * width / size) - 0.5, 0, width - 1);
                int x0 = (int)sx, x1 = Math.Min(x0 + 1, width - 1);
                var fx = sx - x0;
                var top = (pixels[(y0 * width) + x0] * (1 - fx)) + (pixels[(y0 * width) + x1] * fx);
                var bottom = (pixels[(y1 * width) + x0] * (1 - fx)) + (pixels[(y1 * width) + x1] * fx);
                result[(y * size) + x] = (byte)Math.Round((top * (1 - fy)) + (bottom * fy));
            }
        }
        return result;
    }
}
