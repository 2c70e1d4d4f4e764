using System.Globalization;

namespace Updp.Training;

/// <summary>
/// A run directory is used by one process at a time: <see cref="Acquire"/> takes an exclusive OS
/// lock on <c>DIR/.lock</c> (released when the process exits, however it exits, so a crash leaves no
/// stale lock) and records the holder's pid in <c>DIR/.lock.pid</c> for the message another process gets.
/// </summary>
public sealed class RunLock : IDisposable
{
    private const string LockName = ".lock";
    private const string PidName = ".lock.pid";

    private readonly FileStream _lock;
    private readonly string _pidFile;

    private RunLock(string directory, FileStream handle, string pidFile)
    {
        Directory = directory;
        _lock = handle;
        _pidFile = pidFile;
    }

    /// <summary>The locked directory (full path).</summary>
    public string Directory { get; }

    /// <summary>Whether this lock is the one on <paramref name="directory"/>.</summary>
    public bool Covers(string directory) =>
        string.Equals(Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar), Directory, StringComparison.Ordinal);

    /// <summary>Locks <paramref name="directory"/> (created if missing) for this process.</summary>
    /// <param name="what">What holds it, e.g. <c>updp train</c>, for the other process's message.</param>
    /// <exception cref="RunInUseException">Another process holds the lock.</exception>
    public static RunLock Acquire(string directory, string what)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        System.IO.Directory.CreateDirectory(directory);
        var lockPath = Path.Combine(directory, LockName);
        var pidFile = Path.Combine(directory, PidName);
        if (System.IO.Directory.Exists(lockPath))
        {
            // Opening it would fail with "access denied", which says nothing about why.
            throw new IOException($"'{lockPath}' is a folder; it should be the run directory's lock file: remove it");
        }
        FileStream handle;
        try
        {
            // FileShare.None is an exclusive flock on Unix: another open of the file fails until this handle closes.
            handle = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            var holder = File.Exists(pidFile) ? File.ReadAllText(pidFile).Trim() : "another process";
            throw new RunInUseException(directory, holder, e);
        }
        AtomicFile.WriteAllText(pidFile, string.Create(CultureInfo.InvariantCulture, $"pid {Environment.ProcessId} ({what})\n"));
        return new RunLock(Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar), handle, pidFile);
    }

    public void Dispose()
    {
        // The lock file stays: deleting it could let two processes lock two different files.
        File.Delete(_pidFile);
        _lock.Dispose();
    }
}

/// <summary>Another process is using the run directory (it holds its <see cref="RunLock"/>).</summary>
public sealed class RunInUseException(string directory, string holder, Exception inner)
    : DescribedIOException($"'{directory}' is in use by {holder}; wait for it to finish or choose another --out", inner)
{
    /// <summary>The run directory.</summary>
    public string Directory { get; } = directory;
}
