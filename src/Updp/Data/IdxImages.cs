namespace Updp.Data;

/// <summary>
/// Images read from an idx3 file: <paramref name="Count"/> grayscale images of
/// <paramref name="Rows"/> × <paramref name="Cols"/> bytes, stored row-major one after another.
/// </summary>
/// <param name="Pixels">All pixels, <c>Count * Rows * Cols</c> bytes.</param>
/// <param name="Count">Number of images.</param>
/// <param name="Rows">Image height.</param>
/// <param name="Cols">Image width.</param>
public sealed record IdxImages(byte[] Pixels, int Count, int Rows, int Cols);
