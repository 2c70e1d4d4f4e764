namespace Updp;

/// <summary>
/// Writes files through a temporary sibling and a rename, so a reader (or a later run after a
/// crash) sees either the old file or the complete new one, never half of it.
/// </summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> (parent directories created) from a stream.</summary>
    public static void Write(string path, Action<Stream> write) => WriteVia(path, tmp => WriteNew(tmp, write));

    /// <summary>Writes <paramref name="path"/> by letting <paramref name="writeTo"/> create a file at a temporary path.</summary>
    public static void WriteVia(string path, Action<string> writeTo)
    {
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            throw new IOException($"cannot write '{path}': it is a directory");
        }
        string? tmp = null;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            tmp = TempPath(full);
            writeTo(tmp);
            File.Move(tmp, full, overwrite: true);
            tmp = null;
        }
        catch (Exception e) when (e is UnauthorizedAccessException || (e is IOException and not DescribedIOException))
        {
            // The system's message names the temporary file, which the user never asked for. Our own
            // I/O exceptions (a bad input image met while writing a cache) already say what is wrong.
            throw new IOException($"cannot write '{path}': {Reason(e)}", e);
        }
        finally
        {
            TryDelete(tmp);
        }
    }

    /// <summary>
    /// Why an I/O operation failed, without the path .NET puts in the message on Unix
    /// (<c>No space left on device : '/x/.y.tmp'</c> gives <c>No space left on device</c>;
    /// <c>Access to the path '/x/.y.tmp' is denied.</c> gives <c>access denied</c>, a file or folder
    /// not found <c>no such file or directory</c>).
    /// </summary>
    public static string Reason(Exception e)
    {
        ArgumentNullException.ThrowIfNull(e);
        // These name the path in the middle of the message, which may be a temporary file's.
        if (e is UnauthorizedAccessException)
        {
            return "access denied";
        }
        if (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return "no such file or directory";
        }
        var message = e.Message.Split('\n')[0].Trim();
        var at = message.LastIndexOf(" : '", StringComparison.Ordinal);
        return (at > 0 && message.EndsWith('\'') ? message[..at] : message).TrimEnd('.');
    }

    public static void WriteAllText(string path, string text) => Write(path, s =>
    {
        using var writer = new StreamWriter(s, leaveOpen: true);
        writer.Write(text);
    });

    /// <summary>A hidden, unique temporary path in the target's directory (same file system, so the rename is atomic).</summary>
    public static string TempPath(string target) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(target))!, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");

    /// <summary>Creates a new file, writes it and flushes it to disk.</summary>
    public static void WriteNew(string path, Action<Stream> write)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        write(stream);
        stream.Flush(flushToDisk: true);
    }

    public static void TryDelete(string? path)
    {
        if (path is null)
        {
            return;
        }
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The original error matters more than a leftover temporary file.
        }
    }
}
