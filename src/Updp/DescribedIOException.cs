namespace Updp;

/// <summary>
/// An I/O failure whose message already says, in the user's terms, which file or folder is at
/// fault and why (a bad input image, a run directory in use). Code that rewords system I/O errors,
/// such as <see cref="AtomicFile"/>, passes these on unchanged.
/// </summary>
public abstract class DescribedIOException : IOException
{
    /// <summary>Creates the exception with its complete message.</summary>
    protected DescribedIOException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
