using System.Diagnostics;
using SkiaSharp;
using StbImageSharp;
using Vips = NetVips;

namespace DecoderBench;

/// <summary>Which formats each library decodes (checked against the known source pixels), whether it reads
/// width/height without decoding (timed and peak-RSS-measured in a child process on a 30000×30000 PNG),
/// what it does with EXIF orientation, and whether the native libraries resolve all their dependencies.</summary>
static class Probe
{
    const int W = 64, H = 48;

    /// <summary>8-bit RGBA, unpremultiplied: the form every check below compares.</summary>
    sealed record Decoded(int W, int H, byte[] Rgba);

    sealed record Lib(string Name, Func<byte[], Decoded> Decode, Func<string, (int W, int H)> Header, Func<byte[], string> Orientation);

    static readonly Lib[] Libs =
    [
        new("StbImageSharp", StbDecode, StbHeader, _ => "not exposed"),
        new("SkiaSharp", SkiaDecode, SkiaHeader, SkiaOrientation),
        new("NetVips", VipsDecode, VipsHeader, VipsOrientation),
    ];

    sealed record Case(string Name, string File, Func<Decoded, string?> Check);

    public static int Run(string dir)
    {
        Directory.CreateDirectory(dir);
        Pipelines.ConfigureVips();
        Console.WriteLine($"libraries loaded: StbImageSharp (managed), SkiaSharp native {SkiaSharpVersion.Native}, "
            + $"libvips {Vips.NetVips.Version(0)}.{Vips.NetVips.Version(1)}.{Vips.NetVips.Version(2)}");
        Console.WriteLine($"libvips loaders/savers suffixes: {string.Join(" ", (Vips.NetVips.GetSuffixes() ?? []).Distinct())}");
        Ldd();

        var cases = MakeFiles(dir);
        var rows = new List<string[]>();
        foreach (var c in cases)
        {
            var bytes = File.ReadAllBytes(c.File);
            var row = new List<string> { c.Name };
            foreach (var lib in Libs)
            {
                string cell;
                try
                {
                    var d = lib.Decode(bytes);
                    string? bad = c.Check(d);
                    cell = bad == null ? "yes" : bad.StartsWith("ok: ", StringComparison.Ordinal) ? $"yes ({bad[4..]})" : $"WRONG ({bad})";
                }
                catch (Exception e)
                {
                    cell = $"no ({Short(e)})";
                }
                row.Add(cell);
            }
            rows.Add([.. row]);
        }

        // EXIF orientation 6 on a 64×32 image: displayed upright it is 32×64.
        string orient = Path.Combine(dir, "orient6.jpg");
        {
            var o = new List<string> { "JPEG, EXIF orientation 6 (64×32 stored)" };
            var bytes = File.ReadAllBytes(orient);
            foreach (var lib in Libs)
            {
                try
                {
                    var d = lib.Decode(bytes);
                    o.Add($"decodes {d.W}×{d.H} (not rotated{(d.W == 64 ? "" : "?!")}); tag: {lib.Orientation(bytes)}");
                }
                catch (Exception e) { o.Add($"no ({Short(e)})"); }
            }
            rows.Add([.. o]);
        }

        // What a decode gives when no pixel format is asked for (RGBA PNG and 16-bit PNG).
        {
            var rgbaPng = File.ReadAllBytes(Path.Combine(dir, "rgba.png"));
            var png16 = File.ReadAllBytes(Path.Combine(dir, "rgb16.png"));
            var stb = ImageResult.FromMemory(rgbaPng);
            var stb16 = ImageResult.FromMemory(png16);
            using var sk = SKBitmap.Decode(rgbaPng);
            using var sk16 = SKBitmap.Decode(png16);
            using var v = Vips.Image.NewFromBuffer(rgbaPng);
            using var v16 = Vips.Image.NewFromBuffer(png16);
            rows.Add(["default pixel format, RGBA PNG / 16-bit PNG (no format asked)",
                $"{stb.Comp} / {stb16.Comp}, 8-bit (ImageResult.FromMemory(bytes))",
                $"{sk.ColorType} {sk.AlphaType} / {sk16.ColorType} {sk16.AlphaType} (SKBitmap.Decode)",
                $"{v.Bands} bands {v.Format} {v.Interpretation} / {v16.Bands} bands {v16.Format} {v16.Interpretation} (NewFromBuffer)"]);
        }

        // Header-only reads: each in a fresh child process so peak RSS belongs to that one call.
        string huge = Path.Combine(dir, "huge_30000x30000_grey.png");
        foreach (var (label, file) in new[] { ("JPEG 500×375", Path.Combine(dir, "photo.jpg")), ("PNG 30000×30000 grey (header-only size read)", huge) })
        {
            var row = new List<string> { label };
            foreach (var lib in Libs) row.Add(HeaderInChild(lib.Name, file));
            rows.Add([.. row]);
        }

        Console.WriteLine();
        Console.WriteLine("| input | " + string.Join(" | ", Libs.Select(l => l.Name)) + " |");
        Console.WriteLine("|---|" + string.Concat(Libs.Select(_ => "---|")));
        foreach (var r in rows) Console.WriteLine("| " + string.Join(" | ", r) + " |");
        return 0;
    }

    /// <summary>Internal mode `header LIB FILE`: prints "W H ms peakRssMB" for one header read after a warm-up.</summary>
    public static int HeaderMain(string lib, string file)
    {
        Pipelines.ConfigureVips();
        var l = Libs.Single(x => x.Name == lib);
        // warm up (load the native library, JIT) on the small JPEG next to it, then time the one call
        string warm = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(file))!, "photo.jpg");
        if (File.Exists(warm)) l.Header(warm);
        long rss0 = PeakRssKb();
        var sw = Stopwatch.StartNew();
        var (w, h) = l.Header(file);
        sw.Stop();
        Console.WriteLine($"{w} {h} {sw.Elapsed.TotalMilliseconds:F1} {(PeakRssKb() - rss0) / 1024.0:F0}");
        return 0;
    }

    static string HeaderInChild(string lib, string file)
    {
        var psi = new ProcessStartInfo(Environment.ProcessPath!, ["header", lib, file])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        string o = p.StandardOutput.ReadToEnd().Trim(), e = p.StandardError.ReadToEnd().Trim();
        p.WaitForExit();
        if (p.ExitCode != 0 || o.Length == 0)
            return $"no ({Short(e.Split('\n').FirstOrDefault(x => x.Contains("Exception")) ?? e)})";
        var f = o.Split(' ');
        return $"yes: {f[0]}×{f[1]} in {f[2]} ms, peak RSS +{f[3]} MB";
    }

    static long PeakRssKb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        return 0;
    }

    static string Short(Exception e) => Short($"{e.GetType().Name}: {e.Message}");

    static string Short(string s)
    {
        s = s.Replace('\n', ' ').Replace('|', '/').Trim();
        return s.Length > 70 ? s[..70] + "…" : s;
    }

    static void Ldd()
    {
        foreach (var so in Directory.GetFiles(AppContext.BaseDirectory, "*.so*").Order())
        {
            var psi = new ProcessStartInfo("ldd", [so]) { RedirectStandardOutput = true };
            using var p = Process.Start(psi)!;
            var lines = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            p.WaitForExit();
            var missing = lines.Where(l => l.Contains("not found")).Select(l => l.Trim()).ToArray();
            Console.WriteLine($"ldd {Path.GetFileName(so)}: {lines.Length} deps, "
                + (missing.Length == 0 ? "none missing" : "MISSING: " + string.Join(", ", missing))
                + $" ({string.Join(' ', lines.Select(l => l.Trim().Split(' ')[0]))})");
        }
    }

    // ---------------- test files ----------------

    static byte[] Gradient() // RGB: R along x, G along y, B constant
    {
        var b = new byte[W * H * 3];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
            {
                int o = (y * W + x) * 3;
                b[o] = (byte)(x * 255 / (W - 1)); b[o + 1] = (byte)(y * 255 / (H - 1)); b[o + 2] = 128;
            }
        return b;
    }

    static readonly byte[][] Quad = [[220, 30, 30], [30, 200, 40], [40, 60, 210], [240, 220, 40]];

    static int QuadIndex(int x, int y) => (x < W / 2 ? 0 : 1) + (y < H / 2 ? 0 : 2);

    static byte[] Quadrants()
    {
        var b = new byte[W * H * 3];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                Quad[QuadIndex(x, y)].CopyTo(b, (y * W + x) * 3);
        return b;
    }

    static double[] Means(byte[] rgb, int ch) => Pipelines.ChannelMeans(rgb, ch);

    /// <summary>Checks size and per-channel RGB means (and alpha mean when given) within tol levels.</summary>
    static Func<Decoded, string?> Expect(double[] rgbMeans, double tol, double alphaMean = 255) => d =>
    {
        if (d.W != W || d.H != H) return $"size {d.W}×{d.H}";
        var m = Pipelines.ChannelMeans(d.Rgba, 4);
        for (int c = 0; c < 3; c++)
            if (Math.Abs(m[c] - rgbMeans[c]) > tol)
                return $"means {m[0]:F0},{m[1]:F0},{m[2]:F0} want {rgbMeans[0]:F0},{rgbMeans[1]:F0},{rgbMeans[2]:F0}";
        if (Math.Abs(m[3] - alphaMean) > 1.5) return $"alpha mean {m[3]:F1} want {alphaMean:F1}";
        return null;
    };

    static List<Case> MakeFiles(string dir)
    {
        string P(string n) => Path.Combine(dir, n);
        var grad = Gradient();
        var gm = Means(grad, 3);
        var quad = Quadrants();
        var qm = Means(quad, 3);
        var cases = new List<Case>();

        // JPEG photo from the benchmark generator (also used for the header-read timing)
        var photo = Synth.PhotoLike(0);
        using (var im = Vips.Image.NewFromMemory(photo, Synth.Width, Synth.Height, 3, Vips.Enums.BandFormat.Uchar))
            im.Jpegsave(P("photo.jpg"), q: 90, subsampleMode: Vips.Enums.ForeignSubsample.On, keep: Vips.Enums.ForeignKeep.None);
        var pm = Means(photo, 3);
        cases.Add(new("JPEG RGB baseline 4:2:0", P("photo.jpg"), d =>
        {
            if (d.W != Synth.Width || d.H != Synth.Height) return $"size {d.W}×{d.H}";
            var m = Pipelines.ChannelMeans(d.Rgba, 4);
            for (int c = 0; c < 3; c++) if (Math.Abs(m[c] - pm[c]) > 2) return $"channel {c} mean {m[c]:F1} want {pm[c]:F1}";
            return null;
        }));

        // grayscale JPEG (1 component)
        var grey = new byte[W * H];
        for (int i = 0; i < grey.Length; i++) grey[i] = (byte)(i % W * 255 / (W - 1));
        using (var im = Vips.Image.NewFromMemory(grey, W, H, 1, Vips.Enums.BandFormat.Uchar))
            im.Jpegsave(P("grey.jpg"), q: 95, keep: Vips.Enums.ForeignKeep.None);
        double gmean = grey.Average(b => (double)b);
        cases.Add(new($"JPEG greyscale ({JpegComponents(P("grey.jpg"))} component)", P("grey.jpg"), Expect([gmean, gmean, gmean], 2)));

        // CMYK JPEG: left half cyan (C=255), right half white; libvips writes it Adobe-style (inverted).
        var cmyk = new byte[W * H * 4];
        for (int y = 0; y < H; y++) for (int x = 0; x < W / 2; x++) cmyk[(y * W + x) * 4] = 255;
        using (var im = Vips.Image.NewFromMemory(cmyk, W, H, 4, Vips.Enums.BandFormat.Uchar))
        using (var im2 = im.Copy(interpretation: Vips.Enums.Interpretation.Cmyk))
            im2.Jpegsave(P("cmyk.jpg"), q: 95, keep: Vips.Enums.ForeignKeep.None);
        cases.Add(new($"JPEG CMYK ({JpegComponents(P("cmyk.jpg"))} components, Adobe)", P("cmyk.jpg"), d =>
        {
            if (d.W != W || d.H != H) return $"size {d.W}×{d.H}";
            double[] l = new double[3], r = new double[3];
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    for (int c = 0; c < 3; c++)
                        (x < W / 2 ? l : r)[c] += d.Rgba[(y * W + x) * 4 + c] / (W / 2.0 * H);
            bool cyan = l[0] < 100 && l[1] > 130 && l[2] > 170, white = r.All(v => v > 220);
            return cyan && white ? $"ok: C=100 % → {l[0]:F0},{l[1]:F0},{l[2]:F0}" : $"left {l[0]:F0},{l[1]:F0},{l[2]:F0} right {r[0]:F0},{r[1]:F0},{r[2]:F0}";
        }));

        // PNG palette (colour type 3, 8-bit indices)
        Synth.WritePng(P("palette.png"), W, H, 3, 8, y =>
        {
            var row = new byte[W];
            for (int x = 0; x < W; x++) row[x] = (byte)QuadIndex(x, y);
            return row;
        }, plte: [.. Quad.SelectMany(c => c)]);
        cases.Add(new("PNG palette (type 3)", P("palette.png"), Expect(qm, 0.01)));

        // PNG RGBA: constant (200,100,50), alpha 0..255 along x; a premultiplying decoder returns darker RGB.
        Synth.WritePng(P("rgba.png"), W, H, 6, 8, _ =>
        {
            var row = new byte[W * 4];
            for (int x = 0; x < W; x++) { row[x * 4] = 200; row[x * 4 + 1] = 100; row[x * 4 + 2] = 50; row[x * 4 + 3] = (byte)(x * 255 / (W - 1)); }
            return row;
        });
        double am = Enumerable.Range(0, W).Average(x => x * 255 / (W - 1));
        cases.Add(new("PNG RGBA (type 6), unpremultiplied", P("rgba.png"), d =>
        {
            if (d.W != W || d.H != H) return $"size {d.W}×{d.H}";
            var m = Pipelines.ChannelMeans(d.Rgba, 4);
            if (Math.Abs(m[3] - am) > 1) return $"alpha mean {m[3]:F1} want {am:F1}";
            // pixels with alpha ≥ 32 must keep their colour
            double worst = 0;
            for (int i = 0; i < W * H; i++)
                if (d.Rgba[i * 4 + 3] >= 32)
                    worst = Math.Max(worst, Math.Max(Math.Abs(d.Rgba[i * 4] - 200), Math.Max(Math.Abs(d.Rgba[i * 4 + 1] - 100), Math.Abs(d.Rgba[i * 4 + 2] - 50))));
            return worst <= 2 ? null : $"colour off by {worst} where alpha ≥ 32 (premultiplied?)";
        }));

        // PNG 16-bit RGB (v8 * 257 so the 8-bit value is exact)
        Synth.WritePng(P("rgb16.png"), W, H, 2, 16, y =>
        {
            var row = new byte[W * 6];
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++) { byte v = grad[(y * W + x) * 3 + c]; row[x * 6 + c * 2] = v; row[x * 6 + c * 2 + 1] = v; }
            return row;
        });
        cases.Add(new("PNG 16-bit RGB (type 2)", P("rgb16.png"), Expect(gm, 0.6)));

        // PNG 8-bit grey
        Synth.WritePng(P("grey.png"), W, H, 0, 8, y => grey.AsSpan(y * W, W).ToArray());
        cases.Add(new("PNG 8-bit grey (type 0)", P("grey.png"), Expect([gmean, gmean, gmean], 0.01)));

        // WebP lossy and lossless (libvips' libwebp)
        using (var im = Vips.Image.NewFromMemory(grad, W, H, 3, Vips.Enums.BandFormat.Uchar))
        {
            im.Webpsave(P("lossy.webp"), q: 90);
            im.Webpsave(P("lossless.webp"), lossless: true);
        }
        cases.Add(new("WebP lossy", P("lossy.webp"), Expect(gm, 3)));
        cases.Add(new("WebP lossless", P("lossless.webp"), Expect(gm, 0.01)));

        // BMP 24-bit
        Synth.WriteBmp(P("rgb24.bmp"), W, H, grad);
        cases.Add(new("BMP 24-bit", P("rgb24.bmp"), Expect(gm, 0.01)));

        // GIF (libvips' cgif saver, 4 colours so no dithering loss)
        using (var im = Vips.Image.NewFromMemory(quad, W, H, 3, Vips.Enums.BandFormat.Uchar))
            im.Gifsave(P("quad.gif"));
        cases.Add(new("GIF", P("quad.gif"), Expect(qm, 2)));

        // EXIF orientation 6 (64×32 stored)
        using (var im = Vips.Image.NewFromMemory(new byte[64 * 32 * 3], 64, 32, 3, Vips.Enums.BandFormat.Uchar))
        using (var im2 = im.Mutate(m => m.Set(Vips.GValue.GIntType, "orientation", 6)))
            im2.Jpegsave(P("orient6.jpg"), q: 90, keep: Vips.Enums.ForeignKeep.Exif);

        // 30000×30000 8-bit grey PNG, all zeros (~0.9 MB file, 900 MB of pixels, 2.7 GB as RGB)
        if (!File.Exists(P("huge_30000x30000_grey.png")))
        {
            var zeros = new byte[30000];
            Synth.WritePng(P("huge_30000x30000_grey.png.tmp"), 30000, 30000, 0, 8, _ => zeros, level: System.IO.Compression.CompressionLevel.Fastest);
            File.Move(P("huge_30000x30000_grey.png.tmp"), P("huge_30000x30000_grey.png"), true);
        }
        return cases;
    }

    /// <summary>Number of components in the JPEG's SOF marker (proves what kind of file was written).</summary>
    static int JpegComponents(string path)
    {
        var b = File.ReadAllBytes(path);
        for (int i = 2; i + 9 < b.Length;)
        {
            if (b[i] != 0xFF) return -1;
            byte m = b[i + 1];
            int len = (b[i + 2] << 8) | b[i + 3];
            if (m is >= 0xC0 and <= 0xCF and not 0xC4 and not 0xC8 and not 0xCC) return b[i + 9];
            i += 2 + len;
        }
        return -1;
    }

    // ---------------- per-library decode to RGBA (unpremultiplied), header read, orientation ----------------

    static Decoded StbDecode(byte[] f)
    {
        var r = ImageResult.FromMemory(f, ColorComponents.RedGreenBlueAlpha);
        return new(r.Width, r.Height, r.Data);
    }

    static (int, int) StbHeader(string path)
    {
        using var fs = File.OpenRead(path);
        var info = ImageInfo.FromStream(fs) ?? throw new InvalidDataException("ImageInfo.FromStream returned null");
        return (info.Width, info.Height);
    }

    static Decoded SkiaDecode(byte[] f)
    {
        using var data = SKData.CreateCopy(f);
        using var codec = SKCodec.Create(data) ?? throw new InvalidDataException("SKCodec.Create returned null");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var buf = new byte[info.BytesSize];
        var res = codec.GetPixels(info, buf);
        if (res != SKCodecResult.Success) throw new InvalidDataException($"GetPixels: {res}");
        return new(info.Width, info.Height, buf);
    }

    static (int, int) SkiaHeader(string path)
    {
        using var codec = SKCodec.Create(path) ?? throw new InvalidDataException("SKCodec.Create returned null");
        return (codec.Info.Width, codec.Info.Height);
    }

    static string SkiaOrientation(byte[] f)
    {
        using var data = SKData.CreateCopy(f);
        using var codec = SKCodec.Create(data)!;
        return $"SKCodec.EncodedOrigin = {codec.EncodedOrigin}";
    }

    static Decoded VipsDecode(byte[] f)
    {
        using var im = Vips.Image.NewFromBuffer(f);
        var cur = im;
        var owned = new List<Vips.Image>();
        try
        {
            if (cur.Interpretation != Vips.Enums.Interpretation.Srgb) owned.Add(cur = cur.Colourspace(Vips.Enums.Interpretation.Srgb));
            if (cur.Format != Vips.Enums.BandFormat.Uchar) owned.Add(cur = cur.Cast(Vips.Enums.BandFormat.Uchar));
            if (cur.Bands == 3) owned.Add(cur = cur.Bandjoin(255));
            if (cur.Bands != 4) throw new InvalidDataException($"{cur.Bands} bands");
            return new(cur.Width, cur.Height, cur.WriteToMemory<byte>());
        }
        finally
        {
            foreach (var o in owned) o.Dispose();
        }
    }

    static (int, int) VipsHeader(string path)
    {
        using var im = Vips.Image.NewFromFile(path, access: Vips.Enums.Access.Sequential);
        return (im.Width, im.Height);
    }

    static string VipsOrientation(byte[] f)
    {
        using var im = Vips.Image.NewFromBuffer(f);
        string tag = im.Contains("orientation") ? $"\"orientation\" = {im.Get("orientation")}" : "no \"orientation\" field";
        using var t = Vips.Image.ThumbnailBuffer(f, 64);
        return $"{tag}; ThumbnailBuffer gives {t.Width}×{t.Height}";
    }
}
