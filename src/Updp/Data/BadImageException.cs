namespace Updp.Data;

/// <summary>
/// An image file that cannot be used: unreadable, truncated, of an unknown format, or of a size
/// outside the accepted range. The message names the file.
/// </summary>
public sealed class BadImageException : DescribedIOException
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public BadImageException(string path, string reason, Exception? inner = null)
        : base($"image '{path}': {reason}", inner)
    {
        FilePath = path;
        Reason = reason;
    }

    /// <summary>The file.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong with it.</summary>
    public string Reason { get; }
}
