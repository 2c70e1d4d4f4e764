namespace Updp;

/// <summary>Where Updp keeps what it measured about this machine (latency tables, the kernel check).</summary>
public static class CacheFolder
{
    /// <summary><c>$UPDP_CACHE</c>, else <c>$XDG_CACHE_HOME/updp</c>, else <c>~/.cache/updp</c>.</summary>
    public static string Root => Environment.GetEnvironmentVariable("UPDP_CACHE") is { Length: > 0 } cache
        ? cache
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "updp");
}
