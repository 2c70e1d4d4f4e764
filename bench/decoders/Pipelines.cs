using System.Collections.Concurrent;
using SkiaSharp;
using StbImageSharp;
using Vips = NetVips;

namespace DecoderBench;

/// <summary>The eval transform done by each candidate: decode an encoded image (bytes in memory) to 8-bit RGB,
/// resize so the shorter side is 224, centre-crop 224×224. Every pipeline returns 224·224·3 bytes, RGB.</summary>
static class Pipelines
{
    public const int Side = 224;

    public sealed record Variant(string Key, string Library, string Description, Func<byte[], byte[]> Run);

    public static readonly Variant[] Resize =
    [
        new("a", "StbImageSharp", "stb decode + managed bilinear (antialiased, crop-aware)", StbManaged),
        new("b", "SkiaSharp", "SKCodec full decode + ScalePixels (linear)", f => Skia(f, scaled: false, cubic: false)),
        new("b3", "SkiaSharp", "SKCodec full decode + ScalePixels (cubic Mitchell)", f => Skia(f, scaled: false, cubic: true)),
        new("c", "SkiaSharp", "SKCodec scaled decode (k/8) + ScalePixels (linear)", f => Skia(f, scaled: true, cubic: false)),
        new("d", "NetVips", "ThumbnailBuffer 224×224 crop=centre (shrink-on-load)", VipsThumbnail),
        new("e", "NetVips", "NewFromBuffer full decode + Resize (lanczos3) + Crop", VipsResize),
    ];

    /// <summary>Decode only, to 8-bit pixels (RGB for stb and vips, RGBA for Skia, which has no 24-bit type).</summary>
    public static readonly Variant[] DecodeOnly =
    [
        new("stb", "StbImageSharp", "ImageResult.FromMemory(RGB)", f => ImageResult.FromMemory(f, ColorComponents.RedGreenBlue).Data),
        new("skia", "SkiaSharp", "SKCodec.GetPixels(RGBA8888)", SkiaDecode),
        new("vips", "NetVips", "NewFromBuffer(sequential).WriteToMemory<byte>()", f =>
        {
            using var im = Vips.Image.NewFromBuffer(f, access: Vips.Enums.Access.Sequential);
            return im.WriteToMemory<byte>();
        }),
    ];

    public static int VipsConcurrency = 1;

    public static void ConfigureVips()
    {
        // No operation cache (repeated runs over the same buffers must not hit it) and one libvips worker
        // per pipeline, so that the Parallel.ForEach degree is the only parallelism.
        Vips.Cache.Max = 0;
        Vips.Cache.MaxFiles = 0;
        Vips.Cache.MaxMem = 0;
        Vips.NetVips.Concurrency = VipsConcurrency;
    }

    public static (int W, int H) ResizedSize(int w, int h) =>
        w <= h ? (Side, (int)Math.Round(h * (double)Side / w)) : ((int)Math.Round(w * (double)Side / h), Side);

    // ---------------- (a) StbImageSharp + managed resize ----------------

    static byte[] StbManaged(byte[] file)
    {
        var r = ImageResult.FromMemory(file, ColorComponents.RedGreenBlue);
        return ManagedResizeCrop(r.Data, r.Width, r.Height);
    }

    sealed record Coeffs(int[] Start, int[] Count, float[] W, int Taps);

    static readonly ConcurrentDictionary<(int, int, int), Coeffs> CoeffCache = new();

    /// <summary>PIL-style bilinear: triangle filter whose support grows with the downscale factor (so it
    /// averages like an area filter when shrinking), for output pixels offset..offset+224.</summary>
    static Coeffs MakeCoeffs(int inSize, int outSize, int offset) => CoeffCache.GetOrAdd((inSize, outSize, offset), k =>
    {
        double scale = (double)inSize / outSize, fs = Math.Max(scale, 1.0), support = fs;
        int taps = (int)Math.Ceiling(support) * 2 + 1;
        var start = new int[Side];
        var count = new int[Side];
        var w = new float[Side * taps];
        for (int i = 0; i < Side; i++)
        {
            double centre = (i + offset + 0.5) * scale;
            int x0 = Math.Max(0, (int)Math.Floor(centre - support + 0.5));
            int x1 = Math.Min(inSize, (int)Math.Floor(centre + support + 0.5));
            double sum = 0;
            for (int x = x0; x < x1; x++) sum += Math.Max(0, 1 - Math.Abs((x - centre + 0.5) / fs));
            for (int x = x0; x < x1; x++)
                w[i * taps + x - x0] = (float)(Math.Max(0, 1 - Math.Abs((x - centre + 0.5) / fs)) / sum);
            start[i] = x0;
            count[i] = x1 - x0;
        }
        return new Coeffs(start, count, w, taps);
    });

    [ThreadStatic] static float[]? tmpBuf;

    public static byte[] ManagedResizeCrop(byte[] rgb, int w, int h)
    {
        var (rw, rh) = ResizedSize(w, h);
        var hc = MakeCoeffs(w, rw, (rw - Side) / 2);
        var vc = MakeCoeffs(h, rh, (rh - Side) / 2);
        int y0 = vc.Start[0], y1 = vc.Start[Side - 1] + vc.Count[Side - 1];
        const int rowLen = Side * 3;
        int need = (y1 - y0) * rowLen;
        if (tmpBuf == null || tmpBuf.Length < need) tmpBuf = new float[need];
        var tmp = tmpBuf;
        // horizontal pass over the source rows the crop needs
        for (int y = y0; y < y1; y++)
        {
            int src = y * w * 3, dst = (y - y0) * rowLen;
            for (int i = 0; i < Side; i++)
            {
                int s = src + hc.Start[i] * 3, wo = i * hc.Taps, n = hc.Count[i];
                float r = 0, g = 0, b = 0;
                for (int k = 0; k < n; k++, s += 3)
                {
                    float wt = hc.W[wo + k];
                    r += rgb[s] * wt; g += rgb[s + 1] * wt; b += rgb[s + 2] * wt;
                }
                tmp[dst + i * 3] = r; tmp[dst + i * 3 + 1] = g; tmp[dst + i * 3 + 2] = b;
            }
        }
        // vertical pass
        var outp = new byte[Side * rowLen];
        Span<float> acc = stackalloc float[rowLen];
        for (int j = 0; j < Side; j++)
        {
            acc.Clear();
            int wo = j * vc.Taps;
            for (int k = 0; k < vc.Count[j]; k++)
            {
                float wt = vc.W[wo + k];
                var row = tmp.AsSpan((vc.Start[j] + k - y0) * rowLen, rowLen);
                for (int x = 0; x < rowLen; x++) acc[x] += row[x] * wt;
            }
            var o = outp.AsSpan(j * rowLen, rowLen);
            for (int x = 0; x < rowLen; x++) o[x] = (byte)Math.Clamp((int)(acc[x] + 0.5f), 0, 255);
        }
        return outp;
    }

    // ---------------- (b), (c) SkiaSharp ----------------

    static readonly SKSamplingOptions Linear = new(SKFilterMode.Linear, SKMipmapMode.None);
    static readonly SKSamplingOptions Mitchell = new(SKCubicResampler.Mitchell);

    static byte[] Skia(byte[] file, bool scaled, bool cubic)
    {
        using var data = SKData.CreateCopy(file);
        using var codec = SKCodec.Create(data) ?? throw new InvalidDataException("SKCodec.Create returned null");
        var size = codec.Info.Size;
        if (scaled)
            for (int k = 1; k <= 8; k++)
            {
                var d = codec.GetScaledDimensions(k / 8f);
                if (Math.Min(d.Width, d.Height) >= Side) { size = d; break; }
            }
        var info = new SKImageInfo(size.Width, size.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var src = new SKBitmap(info);
        var res = codec.GetPixels(info, src.GetPixels());
        if (res != SKCodecResult.Success) throw new InvalidDataException($"SKCodec.GetPixels: {res}");
        var (rw, rh) = ResizedSize(size.Width, size.Height);
        using var dst = new SKBitmap(new SKImageInfo(rw, rh, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        if (!src.ScalePixels(dst, cubic ? Mitchell : Linear)) throw new InvalidOperationException("ScalePixels failed");
        return CropRgba(dst.GetPixelSpan(), rw, rh);
    }

    public static string SkiaScaledSize(byte[] file)
    {
        using var data = SKData.CreateCopy(file);
        using var codec = SKCodec.Create(data)!;
        var all = Enumerable.Range(1, 8).Select(k => (k, d: codec.GetScaledDimensions(k / 8f))).ToArray();
        var pick = all.First(t => Math.Min(t.d.Width, t.d.Height) >= Side);
        return $"{pick.d.Width}×{pick.d.Height} (scale {pick.k}/8 of {codec.Info.Width}×{codec.Info.Height}; offered: "
            + string.Join(", ", all.Select(t => $"{t.k}/8→{t.d.Width}×{t.d.Height}")) + ")";
    }

    static byte[] SkiaDecode(byte[] file)
    {
        using var data = SKData.CreateCopy(file);
        using var codec = SKCodec.Create(data) ?? throw new InvalidDataException("SKCodec.Create returned null");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var buf = new byte[info.BytesSize];
        var res = codec.GetPixels(info, buf);
        if (res != SKCodecResult.Success) throw new InvalidDataException($"SKCodec.GetPixels: {res}");
        return buf;
    }

    static byte[] CropRgba(ReadOnlySpan<byte> rgba, int w, int h)
    {
        int left = (w - Side) / 2, top = (h - Side) / 2;
        var outp = new byte[Side * Side * 3];
        for (int y = 0; y < Side; y++)
        {
            var row = rgba.Slice(((top + y) * w + left) * 4, Side * 4);
            int o = y * Side * 3;
            for (int x = 0; x < Side; x++)
            {
                outp[o + x * 3] = row[x * 4];
                outp[o + x * 3 + 1] = row[x * 4 + 1];
                outp[o + x * 3 + 2] = row[x * 4 + 2];
            }
        }
        return outp;
    }

    // ---------------- (d), (e) NetVips ----------------

    static byte[] VipsThumbnail(byte[] file)
    {
        using var im = Vips.Image.ThumbnailBuffer(file, Side, height: Side, crop: Vips.Enums.Interesting.Centre);
        return VipsRgb(im);
    }

    static byte[] VipsResize(byte[] file)
    {
        using var im = Vips.Image.NewFromBuffer(file, access: Vips.Enums.Access.Sequential);
        var (rw, rh) = ResizedSize(im.Width, im.Height);
        using var r = im.Resize(rw / (double)im.Width, vscale: rh / (double)im.Height);
        using var c = r.Crop((r.Width - Side) / 2, (r.Height - Side) / 2, Side, Side);
        return VipsRgb(c);
    }

    /// <summary>8-bit sRGB, 3 bands, as bytes (no-op conversions for an ordinary JPEG).</summary>
    public static byte[] VipsRgb(Vips.Image im)
    {
        var cur = im;
        var owned = new List<Vips.Image>();
        try
        {
            if (cur.Interpretation != Vips.Enums.Interpretation.Srgb) owned.Add(cur = cur.Colourspace(Vips.Enums.Interpretation.Srgb));
            if (cur.Bands == 4) owned.Add(cur = cur.Flatten([255, 255, 255]));
            if (cur.Format != Vips.Enums.BandFormat.Uchar) owned.Add(cur = cur.Cast(Vips.Enums.BandFormat.Uchar));
            if (cur.Bands != 3) throw new InvalidDataException($"vips: {cur.Bands} bands");
            return cur.WriteToMemory<byte>();
        }
        finally
        {
            foreach (var o in owned) o.Dispose();
        }
    }

    /// <summary>Per-channel means of an interleaved 8-bit buffer.</summary>
    public static double[] ChannelMeans(ReadOnlySpan<byte> px, int channels)
    {
        var s = new long[channels];
        for (int i = 0; i < px.Length; i++) s[i % channels] += px[i];
        int n = px.Length / channels;
        return [.. s.Select(v => (double)v / n)];
    }
}
