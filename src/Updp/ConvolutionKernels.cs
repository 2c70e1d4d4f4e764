using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using static TorchSharp.torch;

namespace Updp;

/// <summary>Which convolution kernels libtorch uses in this process, after <see cref="ConvolutionKernels.Check"/>.</summary>
public enum ConvolutionKernelChoice
{
    /// <summary>libtorch's default, oneDNN with the CPU's widest instructions: it computed the probes correctly.</summary>
    OneDnn,

    /// <summary>
    /// oneDNN limited to AVX2 (<c>ONEDNN_MAX_CPU_ISA=AVX2</c>), because its AVX-512 kernels were found
    /// to compute wrongly on this CPU by an earlier process (or the user set the limit).
    /// </summary>
    OneDnnLimited,

    /// <summary>
    /// oneDNN computed a probe wrongly and could no longer be limited in this process, so libtorch's
    /// own reference convolutions are used: correct, 3–7× slower for a training step. Later
    /// processes on this machine limit oneDNN to AVX2 instead.
    /// </summary>
    Reference,
}

/// <summary>
/// A check that libtorch's CPU convolutions compute what they should, and a way round them when
/// they do not (docs/RELIABILITY.md, "Wrong convolutions"). On an AMD EPYC virtual machine (CPU family
/// 26, AVX-512) oneDNN 3.7's AVX-512 float32 convolution returns wrong numbers or NaN when the
/// channel count is not a multiple of 16 and the input is NCHW (24→24 channels, 3×3: errors of 5
/// on outputs of 5); the same call is right on channels-last input, in float64, with AVX2 kernels
/// and on an Intel Xeon. A merge check caught it.
/// <para>
/// <see cref="Check"/> compares a few small convolutions with float64. oneDNN's instruction set can
/// only be limited before its first use in a process, so the verdict is kept per CPU and libtorch
/// version in <see cref="CacheFolder.Root"/>/kernels: a process that finds the AVX-512 kernels wrong
/// switches oneDNN off for itself (<c>torch.backends.mkldnn.enabled = False</c> in Python) and
/// records it; later processes limit oneDNN to AVX2 before using it.
/// </para>
/// </summary>
public static class ConvolutionKernels
{
    /// <summary>Relative error above which a probe counts as wrong: float32 rounding gives about 1e-6.</summary>
    public const double Tolerance = 1e-4;

    private const string IsaVariable = "ONEDNN_MAX_CPU_ISA";

    // Shapes that exercise oneDNN's blocked layouts: channels below, at and off multiples of 16,
    // the stem of a 1- and a 3-channel model, a strided 2×2 downsampling and a depthwise 7×7.
    private static readonly (int In, int Out, int Side, int Kernel, int Stride, int Groups)[] Probes =
    [
        (24, 24, 8, 3, 1, 1), (40, 80, 8, 2, 2, 1), (16, 32, 8, 3, 1, 1), (3, 16, 16, 3, 2, 1), (1, 8, 12, 4, 4, 1), (40, 40, 8, 7, 1, 40),
    ];

    private static readonly Lazy<ConvolutionKernelChoice> Choice = new(Decide, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// Checks the convolutions once per process (milliseconds) and returns the kernels in use; later
    /// calls return the first answer. Call it before the first convolution whose result matters
    /// (<see cref="Models.ModelRegistry"/> does).
    /// </summary>
    /// <exception cref="InvalidOperationException">Even libtorch's reference kernels computed a probe wrongly.</exception>
    public static ConvolutionKernelChoice Check() => Choice.Value;

    /// <summary>
    /// The largest difference between a float32 convolution on this machine and the same in float64,
    /// relative to the largest output, over the probe shapes (about 1e-6 where the kernels are right;
    /// infinity for NaN).
    /// </summary>
    public static double ProbeError()
    {
        var worst = 0.0;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var generator = new Generator(20240101);
        foreach (var (cin, cout, side, kernel, stride, groups) in Probes)
        {
            var x = randn([2, cin, side, side], generator: generator);
            var w = randn([cout, cin / groups, kernel, kernel], generator: generator) / Math.Sqrt(cin / groups * kernel * kernel);
            var b = randn([cout], generator: generator);
            long[] padding = kernel % 2 == 1 ? [kernel / 2, kernel / 2] : [0, 0];
            var y = nn.functional.conv2d(x, w, b, [stride, stride], padding, groups: groups).to_type(ScalarType.Float64);
            var expected = nn.functional.conv2d(x.to_type(ScalarType.Float64), w.to_type(ScalarType.Float64), b.to_type(ScalarType.Float64),
                [stride, stride], padding, groups: groups);
            var error = (y - expected).abs().max().item<double>() / Math.Max(1, expected.abs().max().item<double>());
            // Only a finite, small error passes.
            worst = double.IsNaN(error) ? double.PositiveInfinity : Math.Max(worst, error);
        }
        return worst;
    }

    /// <summary>Where the verdict for this CPU and libtorch version is kept.</summary>
    public static string VerdictPath { get; } = Path.Combine(CacheFolder.Root, "kernels", $"onednn-{MachineKey()}.json");

    private sealed record Verdict(
        [property: JsonPropertyName("cpu")] string Cpu,
        [property: JsonPropertyName("avx512_convolutions_wrong")] bool Avx512Wrong,
        [property: JsonPropertyName("probe_error")] double ProbeError);

    private static ConvolutionKernelChoice Decide()
    {
        var userLimit = Environment.GetEnvironmentVariable(IsaVariable) is { Length: > 0 };
        var limited = userLimit;
        var kept = userLimit ? null : ReadVerdict();
        if (kept is { Avx512Wrong: true })
        {
            // Before oneDNN's first use, which reads the variable once. The runtime's copy of the
            // environment is not the C library's that oneDNN reads, so set both.
            SetEnv(IsaVariable, "AVX2", 1);
            Environment.SetEnvironmentVariable(IsaVariable, "AVX2");
            limited = true;
            QuietNnpack();
        }
        var error = ProbeError();
        if (error <= Tolerance)
        {
            // Written once per machine, not by every process.
            if (!limited && kept is null)
            {
                WriteVerdict(new Verdict(CpuName(), false, error));
            }
            return limited ? ConvolutionKernelChoice.OneDnnLimited : ConvolutionKernelChoice.OneDnn;
        }
        if (!limited)
        {
            WriteVerdict(new Verdict(CpuName(), true, error));
        }
        SetUserEnabledMkldnn(GlobalContext(), false);
        QuietNnpack();
        var reference = ProbeError();
        return reference <= Tolerance
            ? ConvolutionKernelChoice.Reference
            : throw new InvalidOperationException(
                $"libtorch's convolutions compute wrong results on this CPU (relative error {error:G3} with oneDNN, {reference:G3} without); no result would be trustworthy");
    }

    private static Verdict? ReadVerdict()
    {
        try
        {
            return File.Exists(VerdictPath) ? JsonSerializer.Deserialize<Verdict>(File.ReadAllText(VerdictPath)) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            // An unreadable verdict is measured again (and rewritten): it only decides speed, never correctness.
            return null;
        }
    }

    private static void WriteVerdict(Verdict verdict)
    {
        try
        {
            AtomicFile.WriteAllText(VerdictPath, JsonSerializer.Serialize(verdict));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A cache that cannot be written (read-only home) costs later processes speed, not
            // correctness: each finds the kernels wrong again and uses the reference ones.
            CacheError = $"cannot keep the convolution check in '{VerdictPath}': {AtomicFile.Reason(e)}";
        }
    }

    /// <summary>Why the verdict could not be kept, if it could not; null otherwise.</summary>
    public static string? CacheError { get; private set; }

    private static string CpuName()
    {
        const string cpuinfo = "/proc/cpuinfo";
        var lines = File.Exists(cpuinfo) ? File.ReadLines(cpuinfo).TakeWhile(l => l.Length > 0).ToList() : [];
        string Field(string name) => lines.FirstOrDefault(l => l.StartsWith(name, StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "";
        return $"{Field("model name")} (family {Field("cpu family")}, model {Field("model\t")}, flags {Field("flags")})";
    }

    // The CPU (its name, family, model and features) and the libtorch build: a verdict holds for both.
    private static string MachineKey()
    {
        var key = $"{CpuName()}|{typeof(TorchSharp.torch).Assembly.GetName().Version}";
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..12];
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    // at::globalContext() and at::Context::setUserEnabledMkldnn(bool), exported by libtorch_cpu
    // (TorchSharp, which has loaded it by now, does not wrap them). A member function takes the
    // object as its first argument in the x86-64 System V ABI.
    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    private static extern IntPtr GlobalContext();

    // On the machine whose oneDNN kernels are wrong, NNPACK cannot start either ("Unsupported
    // hardware"), and libtorch tries it, printing a warning to stderr, for every convolution oneDNN
    // does not take. Turning it off there computes the same and keeps stderr to our one line.
    private static void QuietNnpack() => SetUserEnabledNnpack(GlobalContext(), false);

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledNNPACKEb")]
    private static extern void SetUserEnabledNnpack(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledMkldnnEb")]
    private static extern void SetUserEnabledMkldnn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);
}
