using TorchSharp;
using static TorchSharp.torch;

namespace Updp.Data;

/// <summary>
/// One batch as tensors on the CPU, or on <see cref="BatchLoaderOptions.Device"/>. They are created on the enumerating thread when MoveNext runs, so they
/// join a dispose scope that is open around the loop, but not one opened inside the loop body:
/// there, dispose the batch itself (<c>using (batch)</c>). Disposing twice is harmless.
/// </summary>
public sealed class Batch : IDisposable
{
    internal Batch(Tensor images, Tensor labels)
    {
        Images = images;
        Labels = labels;
    }

    /// <summary>A batch of <paramref name="images"/> and <paramref name="labels"/> moved to <paramref name="device"/> (tensors copied there are disposed).</summary>
    internal static Batch MoveTo(Tensor images, Tensor labels, Device device) => new(images.MovedTo(device), labels.MovedTo(device));

    /// <summary>Transformed images, float32 of shape [B, 1, T, T].</summary>
    public Tensor Images { get; }

    /// <summary>Class labels, int64 of shape [B].</summary>
    public Tensor Labels { get; }

    /// <summary>Number of images B.</summary>
    public int Count => (int)Labels.shape[0];

    /// <summary>Frees both tensors.</summary>
    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}
