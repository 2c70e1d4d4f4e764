namespace Updp.Data;

/// <summary>The resampling filter of a resize, as timm's <c>interpolation</c> names it.</summary>
public enum Interpolation
{
    /// <summary>Triangle filter (PIL's BILINEAR), antialiased when shrinking.</summary>
    Bilinear,

    /// <summary>Cubic convolution with a = −0.5 (PIL's BICUBIC), antialiased when shrinking.</summary>
    Bicubic,
}

/// <summary>
/// Image resizing that gives PIL's results to the bit: timm and torchvision resize PIL images with
/// <c>Image.resize</c>, so a model trained in PyTorch saw exactly these pixels. PIL resamples in
/// two passes, horizontal then vertical, each rounding to 8 bits; its filters are stretched by the
/// shrink factor (an antialiased resize), their weights normalised to sum 1 and then converted to
/// 22-bit fixed point. Every one of those steps changes some pixels by one level, and one level is
/// 4.4/255 after ImageNet normalisation, so they are all reproduced here.
/// </summary>
public static class Resampling
{
    // PIL's Resample.c: 32 bits less 8 for the pixel and 2 for the sign and headroom.
    private const int PrecisionBits = 32 - 8 - 2;

    /// <summary>Parses timm's names: <c>bilinear</c>, <c>bicubic</c> (case-insensitive).</summary>
    public static Interpolation Parse(string name) =>
        name.Trim().ToLowerInvariant() switch
        {
            "bilinear" => Interpolation.Bilinear,
            "bicubic" => Interpolation.Bicubic,
            _ => throw new ArgumentException($"interpolation '{name}' is not supported; expected bilinear or bicubic"),
        };

    /// <summary>timm's name of an interpolation.</summary>
    public static string Name(Interpolation interpolation) => interpolation.ToString().ToLowerInvariant();

    /// <summary>
    /// Resizes the crop of <paramref name="image"/> with its top-left corner at
    /// (<paramref name="top"/>, <paramref name="left"/>) and the given size to
    /// <paramref name="outWidth"/> × <paramref name="outHeight"/>: what torchvision's
    /// <c>resized_crop</c> does (crop, then <c>Image.resize</c> of the crop). Returns HWC bytes with
    /// the image's channels.
    /// </summary>
    public static byte[] ResizeCrop(PixelImage image, int top, int left, int height, int width, int outWidth, int outHeight, Interpolation interpolation)
    {
        image.Validate();
        if (top < 0 || left < 0 || height < 1 || width < 1 || top + height > image.Height || left + width > image.Width)
        {
            throw new ArgumentOutOfRangeException(nameof(top),
                $"crop at ({top}, {left}) of {height}x{width} is outside the {image.Height}x{image.Width} image");
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outWidth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outHeight);
        var channels = image.Channels;
        var source = image.Pixels.Span;
        var (support, filter) = Filter(interpolation);

        // The horizontal pass only computes the rows the vertical pass will read.
        var needHorizontal = outWidth != width;
        var needVertical = outHeight != height;
        var vertical = Coefficients(height, outHeight, support, filter);
        int firstRow = 0, rows = height;
        if (needVertical)
        {
            firstRow = vertical.Bounds[0];
            rows = vertical.Bounds[(outHeight - 1) * 2] + vertical.Bounds[((outHeight - 1) * 2) + 1] - firstRow;
        }

        // Intermediate image: `rows` rows of the crop starting at crop row firstRow, outWidth wide.
        var middleWidth = needHorizontal ? outWidth : width;
        var middle = new byte[rows * middleWidth * channels];
        if (needHorizontal)
        {
            var horizontal = Coefficients(width, outWidth, support, filter);
            for (var r = 0; r < rows; r++)
            {
                var sourceRow = source.Slice((((top + firstRow + r) * image.Width) + left) * channels, width * channels);
                var row = middle.AsSpan(r * outWidth * channels, outWidth * channels);
                Convolve(sourceRow, row, horizontal, outWidth, channels, channels);
            }
        }
        else
        {
            for (var r = 0; r < rows; r++)
            {
                source.Slice((((top + firstRow + r) * image.Width) + left) * channels, width * channels)
                    .CopyTo(middle.AsSpan(r * width * channels, width * channels));
            }
        }

        if (!needVertical)
        {
            return middle;
        }

        var output = new byte[outHeight * middleWidth * channels];
        var stride = middleWidth * channels;
        for (var y = 0; y < outHeight; y++)
        {
            var start = vertical.Bounds[y * 2] - firstRow;
            var count = vertical.Bounds[(y * 2) + 1];
            var weights = vertical.Weights.AsSpan(y * vertical.KernelSize, count);
            var row = output.AsSpan(y * stride, stride);
            for (var i = 0; i < stride; i++)
            {
                var sum = 1 << (PrecisionBits - 1);
                for (var k = 0; k < count; k++)
                {
                    sum += middle[((start + k) * stride) + i] * weights[k];
                }

                row[i] = Clip8(sum);
            }
        }

        return output;
    }

    /// <summary>Resizes the whole image (PIL's <c>Image.resize</c>).</summary>
    public static byte[] Resize(PixelImage image, int outWidth, int outHeight, Interpolation interpolation) =>
        ResizeCrop(image, 0, 0, image.Height, image.Width, outWidth, outHeight, interpolation);

    // One pass along a line of pixels: output pixel i of every channel is the weighted sum of
    // the input pixels Bounds[2i] .. Bounds[2i] + Bounds[2i+1] - 1.
    private static void Convolve(ReadOnlySpan<byte> line, Span<byte> output, Kernel kernel, int outCount, int channels, int step)
    {
        for (var i = 0; i < outCount; i++)
        {
            var start = kernel.Bounds[i * 2];
            var count = kernel.Bounds[(i * 2) + 1];
            var weights = kernel.Weights.AsSpan(i * kernel.KernelSize, count);
            for (var c = 0; c < channels; c++)
            {
                var sum = 1 << (PrecisionBits - 1);
                for (var k = 0; k < count; k++)
                {
                    sum += line[((start + k) * step) + c] * weights[k];
                }

                output[(i * channels) + c] = Clip8(sum);
            }
        }
    }

    private static byte Clip8(int value) =>
        value >= 255 << PrecisionBits ? (byte)255 : value <= 0 ? (byte)0 : (byte)(value >> PrecisionBits);

    private sealed record Kernel(int[] Bounds, int[] Weights, int KernelSize);

    // PIL's precompute_coeffs and normalize_coeffs_8bpc for a resize of inSize pixels to outSize.
    private static Kernel Coefficients(int inSize, int outSize, double filterSupport, Func<double, double> filter)
    {
        var scale = (double)inSize / outSize;
        var filterScale = Math.Max(scale, 1.0);
        var support = filterSupport * filterScale;
        var kernelSize = ((int)Math.Ceiling(support) * 2) + 1;
        var bounds = new int[outSize * 2];
        var weights = new int[outSize * kernelSize];
        var k = new double[kernelSize];
        for (var i = 0; i < outSize; i++)
        {
            var center = (i + 0.5) * scale;
            var inverse = 1.0 / filterScale;

            // C's (int) truncates toward zero; the clamps make the sign irrelevant.
            var min = Math.Max((int)(center - support + 0.5), 0);
            var max = Math.Min((int)(center + support + 0.5), inSize) - min;
            var total = 0.0;
            for (var x = 0; x < max; x++)
            {
                k[x] = filter((x + min - center + 0.5) * inverse);
                total += k[x];
            }

            for (var x = 0; x < max; x++)
            {
                var w = total != 0.0 ? k[x] / total : k[x];
                weights[(i * kernelSize) + x] = w < 0 ? (int)(-0.5 + (w * (1 << PrecisionBits))) : (int)(0.5 + (w * (1 << PrecisionBits)));
            }

            bounds[i * 2] = min;
            bounds[(i * 2) + 1] = max;
        }

        return new Kernel(bounds, weights, kernelSize);
    }

    private static (double Support, Func<double, double> Filter) Filter(Interpolation interpolation) => interpolation switch
    {
        Interpolation.Bilinear => (1.0, Triangle),
        Interpolation.Bicubic => (2.0, Cubic),
        _ => throw new ArgumentOutOfRangeException(nameof(interpolation), interpolation, null),
    };

    private static double Triangle(double x)
    {
        x = Math.Abs(x);
        return x < 1.0 ? 1.0 - x : 0.0;
    }

    private static double Cubic(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        if (x < 1.0)
        {
            return ((((a + 2.0) * x) - (a + 3.0)) * x * x) + 1;
        }

        return x < 2.0 ? ((((x - 5) * x) + 8) * x - 4) * a : 0.0;
    }
}
