using System.Buffers.Binary;
using System.IO.Compression;

namespace DecoderBench;

/// <summary>Deterministic photo-like test images and tiny hand-written PNG/BMP encoders (for the probe,
/// so each file's exact layout — palette, 16-bit, alpha — is known and does not depend on a library).</summary>
static class Synth
{
    public const int Width = 500, Height = 375;

    /// <summary>500×375 RGB: a smooth two-colour gradient with a low-frequency wave, 4–8 large soft-edged and
    /// 25–69 small sharper rotated ellipses with their own shading, and value-noise texture and Gaussian noise (σ 2.5–5.5 levels). Seeded by index.</summary>
    public static byte[] PhotoLike(int index)
    {
        var rng = new Random(20261 + index * 7919);
        int w = Width, h = Height;
        var img = new float[w * h * 3];
        float[] c0 = RandColour(rng), c1 = RandColour(rng);
        double th = rng.NextDouble() * Math.PI * 2, cth = Math.Cos(th), sth = Math.Sin(th);
        double fx = 0.004 + rng.NextDouble() * 0.02, fy = 0.004 + rng.NextDouble() * 0.02, ph = rng.NextDouble() * 6.28;
        double amp = 8 + rng.NextDouble() * 18, diag = Math.Sqrt(w * w + h * h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                double t = Math.Clamp(0.5 + ((x - w / 2.0) * cth + (y - h / 2.0) * sth) / diag, 0, 1);
                double wave = amp * Math.Sin(x * fx + y * fy + ph);
                int o = (y * w + x) * 3;
                for (int c = 0; c < 3; c++) img[o + c] = (float)(c0[c] + (c1[c] - c0[c]) * t + wave);
            }
        int big = rng.Next(4, 9), small = rng.Next(25, 70);
        for (int e = 0; e < big + small; e++)
        {
            bool isBig = e < big;
            double cx = rng.NextDouble() * w, cy = rng.NextDouble() * h;
            double rx = isBig ? 25 + rng.NextDouble() * 130 : 3 + rng.NextDouble() * 22;
            double ry = isBig ? 25 + rng.NextDouble() * 130 : 3 + rng.NextDouble() * 22;
            double a = rng.NextDouble() * Math.PI, ca = Math.Cos(a), sa = Math.Sin(a);
            double soft = isBig ? 1.5 + rng.NextDouble() * 18 : 0.6 + rng.NextDouble() * 2.5;
            double opacity = 0.55 + rng.NextDouble() * 0.45;
            float[] col = RandColour(rng);
            double shade = (rng.NextDouble() - 0.5) * 90; // lighter on one side
            double rmin = Math.Min(rx, ry), rmax = Math.Max(rx, ry) * (1 + soft / rmin) + 1;
            int x0 = Math.Max(0, (int)(cx - rmax)), x1 = Math.Min(w - 1, (int)(cx + rmax));
            int y0 = Math.Max(0, (int)(cy - rmax)), y1 = Math.Min(h - 1, (int)(cy + rmax));
            for (int y = y0; y <= y1; y++)
                for (int x = x0; x <= x1; x++)
                {
                    double dx = x - cx, dy = y - cy, u = dx * ca + dy * sa, v = -dx * sa + dy * ca;
                    double d = Math.Sqrt(u * u / (rx * rx) + v * v / (ry * ry));
                    double edge = (d - 1) * rmin; // approx. signed distance to the border in px
                    double al = opacity * SmoothStep(soft, -soft, edge);
                    if (al <= 0) continue;
                    double s = shade * (u / rx);
                    int o = (y * w + x) * 3;
                    for (int c = 0; c < 3; c++) img[o + c] = (float)(img[o + c] * (1 - al) + (col[c] + s) * al);
                }
        }
        // texture: two octaves of smooth value noise (cells of 10 and 2 px), plus per-pixel sensor noise
        double ta = 10 + rng.NextDouble() * 20, sigma = 2.5 + rng.NextDouble() * 3;
        var t1 = ValueNoise(rng, w, h, 10);
        var t2 = ValueNoise(rng, w, h, 2);
        var outp = new byte[w * h * 3];
        for (int i = 0; i < outp.Length; i++)
        {
            int p = i / 3;
            outp[i] = (byte)Math.Clamp(Math.Round(img[i] + ta * (t1[p] + 0.6 * t2[p]) + Gauss(rng) * sigma), 0, 255);
        }
        return outp;
    }


    /// <summary>Bilinearly interpolated random grid in [-1, 1], cell size in pixels.</summary>
    static float[] ValueNoise(Random rng, int w, int h, int cell)
    {
        int gw = w / cell + 2, gh = h / cell + 2;
        var g = new float[gw * gh];
        for (int i = 0; i < g.Length; i++) g[i] = (float)(rng.NextDouble() * 2 - 1);
        var o = new float[w * h];
        for (int y = 0; y < h; y++)
        {
            int gy = y / cell;
            float fy = (y % cell) / (float)cell;
            for (int x = 0; x < w; x++)
            {
                int gx = x / cell;
                float fx = (x % cell) / (float)cell;
                float a = g[gy * gw + gx], b = g[gy * gw + gx + 1], c = g[(gy + 1) * gw + gx], d = g[(gy + 1) * gw + gx + 1];
                o[y * w + x] = (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy;
            }
        }
        return o;
    }

    static float[] RandColour(Random rng) => [rng.Next(20, 236), rng.Next(20, 236), rng.Next(20, 236)];

    static double SmoothStep(double e0, double e1, double x)
    {
        double t = Math.Clamp((x - e0) / (e1 - e0), 0, 1);
        return t * t * (3 - 2 * t);
    }

    static double Gauss(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    // ---- minimal PNG writer: colour type 0 (grey), 2 (RGB), 3 (palette), 6 (RGBA); 8 or 16 bits ----

    /// <summary>Writes a PNG whose rows come from <paramref name="row"/> (already packed for the colour type
    /// and bit depth, without the filter byte).</summary>
    public static void WritePng(string path, int w, int h, byte colourType, byte bitDepth,
        Func<int, byte[]> row, byte[]? plte = null, CompressionLevel level = CompressionLevel.Optimal)
    {
        using var fs = File.Create(path);
        fs.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, w);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = bitDepth; ihdr[9] = colourType;
        Chunk(fs, "IHDR", ihdr);
        if (plte != null) Chunk(fs, "PLTE", plte);
        using (var ms = new MemoryStream())
        {
            using (var z = new ZLibStream(ms, level, leaveOpen: true))
                for (int y = 0; y < h; y++)
                {
                    z.WriteByte(0);
                    z.Write(row(y));
                }
            // one IDAT per 1 MiB
            var all = ms.ToArray();
            for (int o = 0; o < all.Length; o += 1 << 20)
                Chunk(fs, "IDAT", all.AsSpan(o, Math.Min(1 << 20, all.Length - o)));
        }
        Chunk(fs, "IEND", []);
    }

    static void Chunk(Stream s, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        s.Write(len);
        var td = new byte[4 + data.Length];
        for (int i = 0; i < 4; i++) td[i] = (byte)type[i];
        data.CopyTo(td.AsSpan(4));
        s.Write(td);
        BinaryPrimitives.WriteUInt32BigEndian(len, Crc32(td));
        s.Write(len);
    }

    static readonly uint[] CrcTable = MakeCrcTable();

    static uint[] MakeCrcTable()
    {
        var t = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }

    static uint Crc32(ReadOnlySpan<byte> d)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in d) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }

    /// <summary>24-bit bottom-up BI_RGB BMP from top-down RGB bytes.</summary>
    public static void WriteBmp(string path, int w, int h, byte[] rgb)
    {
        int stride = (w * 3 + 3) & ~3, size = 54 + stride * h;
        var b = new byte[size];
        b[0] = (byte)'B'; b[1] = (byte)'M';
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(2), size);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(10), 54);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(18), w);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(22), h);
        BinaryPrimitives.WriteInt16LittleEndian(b.AsSpan(26), 1);
        BinaryPrimitives.WriteInt16LittleEndian(b.AsSpan(28), 24);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(34), stride * h);
        for (int y = 0; y < h; y++)
        {
            int row = 54 + (h - 1 - y) * stride;
            for (int x = 0; x < w; x++)
            {
                int s = (y * w + x) * 3;
                b[row + x * 3] = rgb[s + 2]; b[row + x * 3 + 1] = rgb[s + 1]; b[row + x * 3 + 2] = rgb[s];
            }
        }
        File.WriteAllBytes(path, b);
    }
}
