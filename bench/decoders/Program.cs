// Image decoder benchmark (issue 11; bench/decoders.sh runs it, docs/BENCHMARKS.md has the results). Modes:
//   make DIR N        N deterministic photo-like 500×375 JPEGs (q90, 4:2:0, libvips' jpegsave)
//   run DIR [--threads T] [--runs R] [--check F] [--only a,b,..] [--vips-concurrency C]
//                     decode + resize shorter side to 224 + centre crop, per candidate, and decode only;
//                     outputs of the first F files checked against each other before timing
//   probe DIR         formats each library decodes, header-only size reads, EXIF orientation, ldd
//   topng SRC DST     preview helper (libvips)
using System.Diagnostics;
using DecoderBench;
using Vips = NetVips;

if (args.Length < 2) return Usage();
try
{
    return args[0] switch
    {
        "make" when args.Length >= 3 => Make(args[1], int.Parse(args[2])),
        "run" => Run(args[1], Opt("--threads", 1), Opt("--runs", 5), Opt("--check", 100), OptS("--only"), Opt("--vips-concurrency", 1)),
        "probe" => Probe.Run(args[1]),
        "topng" when args.Length >= 3 => ToPng(args[1], args[2]), // preview helper
        "header" when args.Length >= 3 => Probe.HeaderMain(args[1], args[2]), // used by probe
        _ => Usage(),
    };
}
catch (FormatException e)
{
    Console.Error.WriteLine(e.Message);
    return Usage();
}

int Opt(string name, int dflt)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1]) : dflt;
}

string? OptS(string name)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

static int Usage()
{
    Console.Error.WriteLine("usage: DecoderBench make DIR N | run DIR [--threads 1|2] [--runs 5] [--check 100] [--only a,b,..] [--vips-concurrency 1] | probe DIR");
    return 2;
}

static int ToPng(string src, string dst)
{
    using var im = Vips.Image.NewFromFile(src);
    im.Pngsave(dst);
    return 0;
}

static int Make(string dir, int n)
{
    Directory.CreateDirectory(dir);
    Pipelines.ConfigureVips();
    var sizes = new long[n];
    Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, i =>
    {
        var rgb = Synth.PhotoLike(i);
        string path = Path.Combine(dir, $"img_{i:D5}.jpg");
        using var im = Vips.Image.NewFromMemory(rgb, Synth.Width, Synth.Height, 3, Vips.Enums.BandFormat.Uchar);
        im.Jpegsave(path, q: 90, subsampleMode: Vips.Enums.ForeignSubsample.On, keep: Vips.Enums.ForeignKeep.None);
        sizes[i] = new FileInfo(path).Length;
    });
    Console.WriteLine($"wrote {n} JPEGs {Synth.Width}x{Synth.Height} q90 4:2:0 (libvips {Vips.NetVips.Version(0)}.{Vips.NetVips.Version(1)}.{Vips.NetVips.Version(2)} jpegsave) to {dir}: "
        + $"{sizes.Average() / 1024:F1} KB mean, {sizes.Min() / 1024.0:F1}–{sizes.Max() / 1024.0:F1} KB");
    return 0;
}

static int Run(string dir, int threads, int runs, int check, string? only, int vipsConcurrency)
{
    var paths = Directory.GetFiles(dir, "*.jpg").Order(StringComparer.Ordinal).ToArray();
    if (paths.Length == 0) { Console.Error.WriteLine($"no .jpg in {dir}"); return 1; }
    var files = paths.Select(File.ReadAllBytes).ToArray();
    Pipelines.VipsConcurrency = vipsConcurrency;
    Pipelines.ConfigureVips();
    ThreadPool.SetMinThreads(Math.Max(4, threads + 2), 4);
    Console.WriteLine($"{files.Length} files ({files.Sum(f => (long)f.Length) / 1024.0 / files.Length:F1} KB mean), read into memory; "
        + $"threads {threads}, runs {runs} after 1 warm-up; {Environment.ProcessorCount} cores; loadavg {LoadAvg()}");
    Console.WriteLine($"libvips {Vips.NetVips.Version(0)}.{Vips.NetVips.Version(1)}.{Vips.NetVips.Version(2)} (concurrency {Vips.NetVips.Concurrency}, cache off), "
        + $"Skia native {SkiaSharp.SkiaSharpVersion.Native}, .NET {Environment.Version}");
    Console.WriteLine($"(c) decodes {Pipelines.SkiaScaledSize(files[0])} for the first file");

    // Sanity: per-channel means of each variant's output against the median of all variants (catches failed
    // decodes and BGR/RGB swaps), and for the 224×224 crops the mean absolute pixel difference from the
    // median variant's crop (catches flips, transposes and misplaced crops).
    bool ok = true;
    int nCheck = Math.Min(check, files.Length);
    Console.WriteLine($"\nsanity check on {nCheck} files: max |channel mean − median of variants|, and for crops the max mean |pixel − median variant's pixel| (levels):");
    foreach (var (set, isCrop) in new[] { (Pipelines.Resize, true), (Pipelines.DecodeOnly, false) })
    {
        var maxDev = new double[set.Length];
        var maxMad = new double[set.Length];
        for (int f = 0; f < nCheck; f++)
        {
            var outs = set.Select(v => v.Run(files[f])).ToArray();
            var means = set.Select((v, i) =>
            {
                if (isCrop && outs[i].Length != Pipelines.Side * Pipelines.Side * 3)
                    throw new InvalidDataException($"{v.Key}: {outs[i].Length} bytes");
                return Pipelines.ChannelMeans(outs[i], v.Key == "skia" ? 4 : 3)[..3];
            }).ToArray();
            for (int c = 0; c < 3; c++)
            {
                var col = means.Select(m => m[c]).Order().ToArray();
                double med = col[col.Length / 2];
                for (int v = 0; v < set.Length; v++) maxDev[v] = Math.Max(maxDev[v], Math.Abs(means[v][c] - med));
            }
            if (isCrop)
            {
                double lum(double[] m) => m.Sum();
                var order = Enumerable.Range(0, set.Length).OrderBy(i => lum(means[i])).ToArray();
                var refOut = outs[order[set.Length / 2]];
                for (int v = 0; v < set.Length; v++)
                {
                    long d = 0;
                    for (int i = 0; i < refOut.Length; i++) d += Math.Abs(outs[v][i] - refOut[i]);
                    maxMad[v] = Math.Max(maxMad[v], (double)d / refOut.Length);
                }
            }
        }
        for (int v = 0; v < set.Length; v++)
        {
            bool good = maxDev[v] <= 3.0 && maxMad[v] <= 12.0;
            ok &= good;
            Console.WriteLine($"  {set[v].Key,-5} means {maxDev[v],5:F2}" + (isCrop ? $"  pixels {maxMad[v],5:F2}" : "") + (good ? "  ok" : "  MISMATCH"));
        }
    }
    if (!ok) { Console.Error.WriteLine("sanity check failed: not timing"); return 3; }

    var all = Pipelines.Resize.Concat(Pipelines.DecodeOnly).Where(v => only == null || only.Split(',').Contains(v.Key)).ToArray();
    var rates = all.ToDictionary(v => v, _ => new List<double>());
    var opts = new ParallelOptions { MaxDegreeOfParallelism = threads };
    for (int r = 0; r <= runs; r++) // r = 0 is the warm-up; variants in turns so drift hits all alike
        foreach (var v in all)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var sw = Stopwatch.StartNew();
            Parallel.ForEach(files, opts, f => v.Run(f));
            sw.Stop();
            if (r > 0) rates[v].Add(files.Length / sw.Elapsed.TotalSeconds);
        }

    Console.WriteLine($"\nimages/s, {threads} thread(s), median of {runs} runs (min–max); loadavg at end {LoadAvg()}");
    Console.WriteLine("| variant | library | pipeline | images/s | min–max |");
    Console.WriteLine("|---|---|---|---:|---:|");
    foreach (var v in all)
    {
        var s = rates[v].Order().ToArray();
        double med = s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
        string kind = Pipelines.DecodeOnly.Contains(v) ? "decode only: " : "";
        Console.WriteLine($"| {v.Key} | {v.Library} | {kind}{v.Description} | {med:F0} | {s[0]:F0}–{s[^1]:F0} |");
    }
    return 0;
}

static string LoadAvg() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";
