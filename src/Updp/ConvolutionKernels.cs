using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Updp;

/// <summary>Which convolution kernels libtorch uses on this machine, after <see cref="ConvolutionKernels.Check"/>.</summary>
public enum ConvolutionKernelChoice
{
    /// <summary>libtorch's default (oneDNN on the CPU): it computed the probe convolutions correctly.</summary>
    OneDnn,

    /// <summary>
    /// oneDNN computed a probe convolution wrongly on this CPU, so libtorch's own reference kernels
    /// are used instead (correct, slower for some layers).
    /// </summary>
    Reference,
}

/// <summary>
/// A check that libtorch's CPU convolutions compute what they should, and a way round them when
/// they do not. On an AMD EPYC virtual machine (CPU family 26, AVX-512; docs/BENCHMARKS.md,
/// "Machines") oneDNN 3.7's AVX-512 float32 convolution returns wrong numbers, or NaN, when the
/// channel count is not a multiple of 16 and the input is NCHW (24→24 channels, 3×3: errors of 5
/// on outputs of 5); the same call is right on channels-last input, at double precision and on an
/// Intel Xeon. A pruned model's merge check caught it. <see cref="Check"/> runs a few small
/// convolutions against double precision; if one is wrong it turns oneDNN off for libtorch's
/// convolutions (<c>at::Context::setUserEnabledMkldnn(false)</c>, what
/// <c>torch.backends.mkldnn.enabled = False</c> does in Python) and checks again.
/// </summary>
public static class ConvolutionKernels
{
    // Shapes that exercise oneDNN's blocked layouts: channels below, at and off multiples of 16,
    // the stem of a 1- and a 3-channel model, a strided 2×2 downsampling and a depthwise 7×7.
    private static readonly (int In, int Out, int Side, int Kernel, int Stride, int Groups)[] Probes =
    [
        (24, 24, 8, 3, 1, 1), (40, 80, 8, 2, 2, 1), (16, 32, 8, 3, 1, 1), (3, 16, 16, 3, 2, 1), (1, 8, 12, 4, 4, 1), (40, 40, 8, 7, 1, 40),
    ];

    private static readonly Lazy<ConvolutionKernelChoice> Choice = new(Decide, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// Checks the convolutions once per process (a few milliseconds) and returns the kernels in use;
    /// later calls return the first answer. Call it before the first convolution whose result matters.
    /// </summary>
    /// <exception cref="InvalidOperationException">Even libtorch's reference kernels computed a probe wrongly.</exception>
    public static ConvolutionKernelChoice Check() => Choice.Value;

    /// <summary>
    /// The largest difference between a float32 convolution on this machine and the same in float64,
    /// relative to the largest output, over the probe shapes (about 1e-6 where the kernels are right).
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
            // NaN counts as wrong: only a finite, small error passes.
            worst = double.IsNaN(error) ? double.PositiveInfinity : Math.Max(worst, error);
        }
        return worst;
    }

    /// <summary>Relative error above which a probe counts as wrong: float32 rounding is about 1e-6 here.</summary>
    public const double Tolerance = 1e-4;

    private static ConvolutionKernelChoice Decide()
    {
        var before = ProbeError();
        if (before <= Tolerance)
        {
            return ConvolutionKernelChoice.OneDnn;
        }
        SetUserEnabledMkldnn(GlobalContext(), false);
        var after = ProbeError();
        if (!(after <= Tolerance))
        {
            throw new InvalidOperationException(
                $"libtorch's convolutions compute wrong results on this CPU (relative error {before:G3} with oneDNN, {after:G3} without); results would not be trustworthy");
        }
        return ConvolutionKernelChoice.Reference;
    }

    // at::globalContext() and at::Context::setUserEnabledMkldnn(bool), exported by libtorch_cpu
    // (TorchSharp, which has loaded it by now, does not wrap them). A member function takes the
    // object as its first argument in the x86-64 System V ABI.
    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    private static extern IntPtr GlobalContext();

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledMkldnnEb")]
    private static extern void SetUserEnabledMkldnn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);
}
