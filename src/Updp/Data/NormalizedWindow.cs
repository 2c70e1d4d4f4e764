namespace Updp.Data;

/// <summary>
/// The last step of both image transforms: copy a T×T window of an HWC uint8 image into CHW
/// float32 planes, mirrored if asked, normalising each pixel through its channel's 256-entry
/// look-up table. Pixels outside the image are zero before normalisation, as torchvision pads.
/// </summary>
internal static class NormalizedWindow
{
    /// <param name="pixels">The image, H×W×C bytes.</param>
    /// <param name="height">H.</param>
    /// <param name="width">W.</param>
    /// <param name="top">Source row of the window's first row (may be negative: padding).</param>
    /// <param name="left">Source column of the window's first column, before mirroring (may be negative).</param>
    /// <param name="flip">Mirror the window horizontally.</param>
    /// <param name="size">T.</param>
    /// <param name="lookup">One table per channel: <c>lookup[c][v]</c> is value v of channel c normalised.</param>
    /// <param name="destination">C×T×T floats.</param>
    public static void Write(ReadOnlySpan<byte> pixels, int height, int width, int top, int left, bool flip, int size, float[][] lookup, Span<float> destination)
    {
        var channels = lookup.Length;
        for (var c = 0; c < channels; c++)
        {
            var table = lookup[c];
            var padding = table[0];
            var plane = destination.Slice(c * size * size, size * size);
            for (var y = 0; y < size; y++)
            {
                var row = plane.Slice(y * size, size);
                var sourceRow = y + top;
                if ((uint)sourceRow >= (uint)height)
                {
                    row.Fill(padding);
                    continue;
                }

                var source = pixels.Slice(sourceRow * width * channels, width * channels);
                for (var x = 0; x < size; x++)
                {
                    var sourceColumn = (flip ? size - 1 - x : x) + left;
                    row[x] = (uint)sourceColumn < (uint)width ? table[source[(sourceColumn * channels) + c]] : padding;
                }
            }
        }
    }
}
