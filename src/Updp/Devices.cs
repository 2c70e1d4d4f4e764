using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Updp;

/// <summary>
/// Where tensors live (docs/DEVICES.md). Models are built and loaded on the CPU and moved to their
/// device once; every tensor that meets a model's (batches, calibration and check inputs, a teacher,
/// a block put in its place) is made on the CPU as before and moved to the model's device, or made
/// there. On the CPU every helper here returns what it was given, so CPU runs compute exactly what
/// they computed before devices existed.
/// </summary>
public static class Devices
{
    /// <summary>The device tensors are made on unless moved: the CPU.</summary>
    public static Device Cpu => CPU;

    /// <summary>Parses <c>cpu</c>, <c>cuda</c> (<c>cuda:0</c>) or <c>cuda:N</c>.</summary>
    /// <exception cref="ArgumentException">Anything else; the message names the value and what was expected.</exception>
    public static Device Parse(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        var text = name.Trim().ToLowerInvariant();
        if (text == "cpu")
        {
            return CPU;
        }
        // An explicit index: TorchSharp's Module.to copies every tensor whose index differs from the
        // one asked for, and a CUDA tensor's index is never -1, so "cuda" as -1 would copy (and unshare) them all.
        if (text == "cuda")
        {
            return new Device(DeviceType.CUDA, 0);
        }
        if (text.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(text.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var index))
        {
            return new Device(DeviceType.CUDA, index);
        }
        throw new ArgumentException($"'{name}': expected cpu, cuda or cuda:N");
    }

    /// <summary>
    /// Returns <paramref name="device"/> when TorchSharp can use it; for CUDA it also turns TF32 off in
    /// cuDNN and cuBLAS, so that convolutions and matrix products keep float32 precision and the
    /// merge and ONNX checks (relative tolerance 1e-4) hold as on the CPU.
    /// </summary>
    /// <param name="label">How the message names the device (e.g. the option that asked for it); default its <see cref="Name"/>.</param>
    /// <exception cref="ArgumentException">
    /// TorchSharp reports no such device; the message, one line, starts with <paramref name="label"/>
    /// and says why (the CPU libtorch package, or no driver or device).
    /// </exception>
    public static Device Require(Device device, string? label = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        label ??= Name(device);
        switch (device.type)
        {
            case DeviceType.CPU:
                return device;
            case DeviceType.CUDA:
                if (!cuda.is_available())
                {
                    throw new ArgumentException($"{label}: TorchSharp reports no CUDA device ({WhyNoCuda()}; see docs/DEVICES.md)");
                }
                var count = cuda.device_count();
                if (device.index >= count)
                {
                    throw new ArgumentException($"{label}: TorchSharp reports {count} CUDA device{(count == 1 ? "" : "s")} (cuda:0–cuda:{count - 1})");
                }
                backends.cudnn.allow_tf32 = false;
                backends.cuda.matmul.allow_tf32 = false;
                return device;
            default:
                throw new ArgumentException($"{label}: only cpu and cuda are supported");
        }
    }

    /// <summary><c>cpu</c> or <c>cuda:N</c>, as <see cref="Parse"/> reads it.</summary>
    public static string Name(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device.type switch
        {
            DeviceType.CPU => "cpu",
            DeviceType.CUDA => device.index < 0 ? "cuda" : $"cuda:{device.index}",
            var other => device.index < 0 ? other.ToString().ToLowerInvariant() : $"{other.ToString().ToLowerInvariant()}:{device.index}",
        };
    }

    public static bool IsCpu(Device device) => device.type == DeviceType.CPU;

    /// <summary>The device of <paramref name="module"/>'s first parameter (else buffer); the CPU for a module with neither.</summary>
    public static Device Of(nn.Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        foreach (var p in module.parameters())
        {
            return p.device;
        }
        foreach (var b in module.buffers())
        {
            return b.device;
        }
        return CPU;
    }

    /// <summary>Whether <paramref name="tensor"/> is on <paramref name="device"/> (a device without index matches any index of its type).</summary>
    public static bool IsOn(Tensor tensor, Device device)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ArgumentNullException.ThrowIfNull(device);
        return tensor.device_type == device.type && (device.index < 0 || device.type == DeviceType.CPU || tensor.device_index == device.index);
    }

    /// <summary>
    /// <paramref name="tensor"/> itself when it is on <paramref name="device"/>, else a copy there (in
    /// the current dispose scope). Whoever owns the original still disposes it.
    /// </summary>
    public static Tensor OnDevice(this Tensor tensor, Device device) => IsOn(tensor, device) ? tensor : tensor.to(device);

    /// <summary>
    /// <paramref name="tensor"/> itself when it is on <paramref name="device"/>, else a copy there,
    /// with <paramref name="tensor"/> disposed: for a tensor the caller made to hand over.
    /// </summary>
    public static Tensor MovedTo(this Tensor tensor, Device device)
    {
        if (IsOn(tensor, device))
        {
            return tensor;
        }
        var moved = tensor.to(device);
        tensor.Dispose();
        return moved;
    }

    /// <summary>
    /// Moves every parameter and buffer of <paramref name="module"/> that is elsewhere to
    /// <paramref name="device"/> and returns the module. Tensors already there stay the same tensors;
    /// the others are replaced by copies, so move a model before any of its blocks is pruned (a pruned
    /// form shares parameters with an original block held outside the model, which a move would copy
    /// apart): <c>PrunedModels.Create</c> and <c>PrunedModels.LoadOptionsOn</c> build models in that order.
    /// </summary>
    public static T MoveTo<T>(this T module, Device device) where T : nn.Module
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(device);
        module.to(device.type == DeviceType.CUDA && device.index < 0 ? new Device(DeviceType.CUDA, 0) : device);
        return module;
    }

    /// <summary>
    /// Waits until the work queued on <paramref name="device"/> is done; nothing on the CPU, where
    /// libtorch returns when the work is. A timer around work on a device must call it before it stops.
    /// </summary>
    public static void Synchronize(Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (device.type == DeviceType.CUDA)
        {
            cuda.synchronize(device.index < 0 ? null : device);
        }
    }

    // The CUDA package ships libtorch_cuda.so next to the program; the CPU package does not.
    private static string WhyNoCuda()
    {
        var baseDir = AppContext.BaseDirectory;
        var cudaLibrary = new[] { baseDir, Path.Combine(baseDir, "runtimes", "linux-x64", "native"), Path.Combine(baseDir, "runtimes", "win-x64", "native") }
            .Any(dir => File.Exists(Path.Combine(dir, "libtorch_cuda.so")) || File.Exists(Path.Combine(dir, "torch_cuda.dll")));
        return cudaLibrary
            ? "libtorch's CUDA libraries are here, but no CUDA driver or device was found"
            : "this build uses the CPU libtorch package";
    }
}

/// <summary>
/// The CPU-only fast paths (<see cref="Training.FusedAdamW"/>'s vectorised update, the small-map
/// depthwise weight gradient of <see cref="Models.DepthwiseConvolution"/>) and the switch that
/// routes CPU tensors to the plain libtorch operations the other devices use, so tests can compare
/// the two on the CPU. The switch is per thread, so tests running in parallel do not see each other's.
/// </summary>
internal static class CpuFastPaths
{
    [ThreadStatic]
    private static int _plainDepth;

    /// <summary>Whether the fast paths are off on this thread (inside <see cref="UsePlainLibtorch"/>).</summary>
    public static bool Disabled => _plainDepth > 0;

    /// <summary>Whether a fast path may handle <paramref name="tensor"/>: on the CPU, with the switch on.</summary>
    public static bool Apply(Tensor tensor) => !Disabled && tensor.device_type == DeviceType.CPU;

    /// <summary>Until disposed, this thread computes with the plain libtorch operations on the CPU too.</summary>
    public static IDisposable UsePlainLibtorch()
    {
        _plainDepth++;
        return new Restore();
    }

    private sealed class Restore : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (!_disposed)
            {
                _disposed = true;
                _plainDepth--;
            }
        }
    }
}
