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
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        if (Directory.Exists(full))
        {
            throw new IOException($"cannot write '{path}': it is a directory");
        }
        var tmp = TempPath(full);
        try
        {
            writeTo(tmp);
            File.Move(tmp, full, overwrite: true);
            tmp = null;
        }
        finally
        {
            TryDelete(tmp);
        }
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
