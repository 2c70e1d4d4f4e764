using TorchSharp;
using static TorchSharp.torch;

namespace Updp.Data;

/// <summary>
/// One batch as CPU tensors. They are created on the enumerating thread when MoveNext runs, so they
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
