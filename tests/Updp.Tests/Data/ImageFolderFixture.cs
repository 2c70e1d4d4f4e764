using SkiaSharp;

namespace Updp.Tests.Data;

/// <summary>
/// Writes image-folder data sets for tests: <c>DIR/train/&lt;class&gt;/…</c> (and optionally
/// val/ and test/) of real JPEG, PNG, WebP and BMP files of assorted sizes, RGB and grayscale,
/// encoded by Skia (BMP by a few lines here, as Skia does not write it). Each class has its own
/// colour and stripe direction plus noise, so a small model learns it in a few steps.
/// </summary>
internal static class ImageFolderFixture
{
    public static readonly string[] Formats = ["png", "jpg", "png-gray", "jpg-gray", "webp", "bmp"];

    /// <summary>Writes <paramref name="perClass"/> images of each class into DIR/<paramref name="split"/>/class_k/.</summary>
    public static List<string> WriteSplit(string root, string split, int classes, int perClass, int seed, int minSide = 24, int maxSide = 72)
    {
        var random = new Random(seed);
        var written = new List<string>();
        for (var c = 0; c < classes; c++)
        {
            var dir = Path.Combine(root, split, $"class_{c}");
            Directory.CreateDirectory(dir);
            for (var i = 0; i < perClass; i++)
            {
                var width = random.Next(minSide, maxSide + 1);
                var height = random.Next(minSide, maxSide + 1);
                var format = Formats[(i + c) % Formats.Length];
                var path = Path.Combine(dir, $"img_{i:D3}.{Extension(format)}");
                Write(path, format, ClassImage(c, classes, width, height, random), width, height);
                written.Add(path);
            }
        }
        return written;
    }

    /// <summary>An RGB image (HWC) of class <paramref name="c"/>: its hue, stripes horizontal or vertical by class, noise.</summary>
    public static byte[] ClassImage(int c, int classes, int width, int height, Random random)
    {
        var hue = 360.0 * c / classes;
        var (r, g, b) = FromHue(hue);
        var vertical = c % 2 == 0;
        var pixels = new byte[width * height * 3];
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                var stripe = ((vertical ? x : y) / 4 % 2 == 0) ? 1.0 : 0.55;
                var noise = random.Next(-20, 21);
                var o = ((y * width) + x) * 3;
                pixels[o] = Clamp((r * stripe) + noise);
                pixels[o + 1] = Clamp((g * stripe) + noise);
                pixels[o + 2] = Clamp((b * stripe) + noise);
            }
        }
        return pixels;
    }

    public static void Write(string path, string format, byte[] rgb, int width, int height)
    {
        if (format == "bmp")
        {
            File.WriteAllBytes(path, Bmp(rgb, width, height));
            return;
        }
        var gray = format.EndsWith("-gray", StringComparison.Ordinal);
        var info = gray
            ? new SKImageInfo(width, height, SKColorType.Gray8, SKAlphaType.Opaque)
            : new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var bitmap = new SKBitmap(info);
        var target = bitmap.GetPixelSpan();
        var span = new byte[target.Length];
        for (var i = 0; i < width * height; i++)
        {
            if (gray)
            {
                span[i] = (byte)(((rgb[3 * i] * 19595) + (rgb[(3 * i) + 1] * 38470) + (rgb[(3 * i) + 2] * 7471) + 0x8000) >> 16);
            }
            else
            {
                span[4 * i] = rgb[3 * i];
                span[(4 * i) + 1] = rgb[(3 * i) + 1];
                span[(4 * i) + 2] = rgb[(3 * i) + 2];
                span[(4 * i) + 3] = 255;
            }
        }
        System.Runtime.InteropServices.Marshal.Copy(span, 0, bitmap.GetPixels(), span.Length);
        var encoded = format switch
        {
            "png" or "png-gray" => SKEncodedImageFormat.Png,
            "jpg" or "jpg-gray" => SKEncodedImageFormat.Jpeg,
            "webp" => SKEncodedImageFormat.Webp,
            _ => throw new ArgumentException(format),
        };
        using var data = bitmap.Encode(encoded, 90) ?? throw new InvalidOperationException($"Skia cannot encode {format}");
        File.WriteAllBytes(path, data.ToArray());
    }

    public static string Extension(string format) => format switch
    {
        "png-gray" => "png",
        "jpg-gray" => "jpg",
        _ => format,
    };

    /// <summary>A 24-bit bottom-up BMP (BITMAPINFOHEADER), rows padded to 4 bytes.</summary>
    public static byte[] Bmp(byte[] rgb, int width, int height)
    {
        var row = ((width * 3) + 3) & ~3;
        var size = 54 + (row * height);
        var bmp = new byte[size];
        bmp[0] = (byte)'B';
        bmp[1] = (byte)'M';
        BitConverter.GetBytes(size).CopyTo(bmp, 2);
        BitConverter.GetBytes(54).CopyTo(bmp, 10);
        BitConverter.GetBytes(40).CopyTo(bmp, 14);
        BitConverter.GetBytes(width).CopyTo(bmp, 18);
        BitConverter.GetBytes(height).CopyTo(bmp, 22);
        BitConverter.GetBytes((short)1).CopyTo(bmp, 26);
        BitConverter.GetBytes((short)24).CopyTo(bmp, 28);
        for (var y = 0; y < height; y++)
        {
            var o = 54 + ((height - 1 - y) * row);
            for (var x = 0; x < width; x++)
            {
                var s = ((y * width) + x) * 3;
                bmp[o + (3 * x)] = rgb[s + 2];
                bmp[o + (3 * x) + 1] = rgb[s + 1];
                bmp[o + (3 * x) + 2] = rgb[s];
            }
        }
        return bmp;
    }

    /// <summary>The 8-byte PNG signature and an IHDR chunk claiming width × height RGB, then nothing: a decompression bomb's header.</summary>
    public static byte[] PngHeaderOnly(int width, int height)
    {
        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8; // bit depth
        ihdr[9] = 2; // RGB
        var chunk = new List<byte>();
        chunk.AddRange(new byte[] { 0, 0, 0, 13 });
        var typeAndData = "IHDR"u8.ToArray().Concat(ihdr).ToArray();
        chunk.AddRange(typeAndData);
        var crc = Crc32(typeAndData);
        chunk.AddRange(new[] { (byte)(crc >> 24), (byte)(crc >> 16), (byte)(crc >> 8), (byte)crc });
        return [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A, .. chunk];
    }

    // The CRC-32 of PNG chunks (ISO 3309, reflected, polynomial 0xEDB88320).
    private static uint Crc32(byte[] data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
            }
        }
        return ~crc;
    }

    private static (double R, double G, double B) FromHue(double hue)
    {
        var x = 1 - Math.Abs((hue / 60 % 2) - 1);
        (double r, double g, double b) = hue switch
        {
            < 60 => (1.0, x, 0.0),
            < 120 => (x, 1.0, 0.0),
            < 180 => (0.0, 1.0, x),
            < 240 => (0.0, x, 1.0),
            < 300 => (x, 0.0, 1.0),
            _ => (1.0, 0.0, x),
        };
        return (40 + (200 * r), 40 + (200 * g), 40 + (200 * b));
    }

    private static byte Clamp(double v) => (byte)Math.Clamp((int)Math.Round(v), 0, 255);
}
