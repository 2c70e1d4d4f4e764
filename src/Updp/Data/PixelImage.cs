namespace Updp.Data;

/// <summary>
/// One decoded 8-bit image, row-major and interleaved: <c>Pixels[(y · Width + x) · Channels + c]</c>
/// (HWC, as PIL and NumPy lay images out). One channel is grayscale, three are RGB.
/// </summary>
/// <param name="Pixels">Height × Width × Channels bytes.</param>
/// <param name="Height">Rows.</param>
/// <param name="Width">Columns.</param>
/// <param name="Channels">1 (grayscale) or 3 (RGB).</param>
public readonly record struct PixelImage(ReadOnlyMemory<byte> Pixels, int Height, int Width, int Channels)
{
    /// <summary>Throws unless the buffer holds exactly Height × Width × Channels bytes of a 1- or 3-channel image.</summary>
    public void Validate()
    {
        if (Height < 1 || Width < 1 || Channels is not (1 or 3) || Pixels.Length != (long)Height * Width * Channels)
        {
            throw new ArgumentException($"a {Height}x{Width} image with {Channels} channels needs {(long)Height * Width * Channels} bytes, got {Pixels.Length}");
        }
    }

    /// <summary>
    /// This image with <paramref name="channels"/> channels: RGB to luma as PIL's
    /// <c>convert("L")</c>, gray to RGB by repeating the channel (PIL's <c>convert("RGB")</c>).
    /// </summary>
    public PixelImage ToChannels(int channels)
    {
        if (channels == Channels)
        {
            return this;
        }

        if (channels == 1)
        {
            return ImageReader.ToGray(this);
        }

        if (channels == 3 && Channels == 1)
        {
            var gray = Pixels.Span;
            var rgb = new byte[gray.Length * 3];
            for (var i = 0; i < gray.Length; i++)
            {
                rgb[3 * i] = rgb[(3 * i) + 1] = rgb[(3 * i) + 2] = gray[i];
            }

            return new PixelImage(rgb, Height, Width, 3);
        }

        throw new ArgumentOutOfRangeException(nameof(channels), channels, "images have 1 or 3 channels");
    }
}
