using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace Updp.Cli;

/// <summary>
/// What each option accepts, declared next to the option and checked while the command line is
/// parsed, so that a bad value is refused (exit 2, one line naming the option, the allowed values
/// and the value given) before anything is loaded, trained or written. One rule per kind of value:
/// integer and number ranges (numbers must be finite, written with a decimal point), existing
/// readable regular files, and output paths whose parent is a folder a file can be created in.
/// </summary>
internal static class OptionRules
{
    /// <summary>Most epochs a run may ask for.</summary>
    public const int MaxEpochs = 10_000;

    /// <summary>Largest batch: 4096 images of 224² RGB are 2.5 GB of floats before any activation.</summary>
    public const int MaxBatch = 4096;

    /// <summary>Most intra-op threads: four per core (more only adds contention; thousands exhaust the process).</summary>
    public static int MaxThreads => Math.Max(4, 4 * Environment.ProcessorCount);

    /// <summary>An integer in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<int> Range(this Option<int> option, int min, int max) =>
        option.Rule(r => r.GetValueOrDefault<int>() is var v && (v < min || v > max) ? IntegerError(min, max, v) : null);

    /// <summary>An integer in [<paramref name="min"/>, <paramref name="max"/>] when given.</summary>
    public static Option<int?> Range(this Option<int?> option, int min, int max) =>
        option.Rule(r => r.GetValueOrDefault<int?>() is int v && (v < min || v > max) ? IntegerError(min, max, v) : null);

    /// <summary>An integer in [<paramref name="min"/>, <paramref name="max"/>] when given.</summary>
    public static Option<long?> Range(this Option<long?> option, long min, long max) =>
        option.Rule(r => r.GetValueOrDefault<long?>() is long v && (v < min || v > max) ? IntegerError(min, max, v) : null);

    /// <summary>A finite number in the interval given (closed unless an end is marked open).</summary>
    public static Option<double> Range(this Option<double> option, double min, double max, bool minOpen = false, bool maxOpen = false) =>
        option.Rule(r => SeparatorError(r) ?? NumberError(r.GetValueOrDefault<double>(), min, max, minOpen, maxOpen));

    /// <summary>A finite number in the interval given, when given.</summary>
    public static Option<double?> Range(this Option<double?> option, double min, double max, bool minOpen = false, bool maxOpen = false) =>
        option.Rule(r => SeparatorError(r) ?? (r.GetValueOrDefault<double?>() is double v ? NumberError(v, min, max, minOpen, maxOpen) : null));

    /// <summary>Every value of an integer list in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static TOption EachInRange<TOption>(this TOption option, int min, int max)
        where TOption : Option =>
        option.Rule(r => r.GetValueOrDefault<int[]?>()?.Where(v => v < min || v > max).Select(v => (int?)v).FirstOrDefault() is int v ? IntegerError(min, max, v) : null);

    /// <summary>
    /// An existing, readable, non-empty regular file (not a folder, pipe or device), when given;
    /// <paramref name="keywords"/> are accepted as they are (e.g. <c>--distill none</c>).
    /// </summary>
    public static TOption ExistingFile<TOption>(this TOption option, params string[] keywords)
        where TOption : Option =>
        option.Rule(r => r.GetValueOrDefault<string?>() is { } path && !keywords.Contains(path) ? FileError(path) : null);

    /// <summary>
    /// A text value that <paramref name="error"/> accepts (it returns why not, or null): for values
    /// with a syntax of their own, such as <c>--latency-budget 70%</c>.
    /// </summary>
    public static TOption Accepts<TOption>(this TOption option, Func<string, string?> error)
        where TOption : Option =>
        option.Rule(r => r.GetValueOrDefault<string?>() is { } value ? error(value) : null);

    /// <summary>Every path of a list is an existing, readable, non-empty regular file.</summary>
    public static Option<string[]> ExistingFiles(this Option<string[]> option) =>
        option.Rule(r => r.GetValueOrDefault<string[]>()?.Select(FileError).FirstOrDefault(e => e is not null));

    /// <summary>A path a file or run directory can be written to: not an existing folder (for a file) and under a folder, not a file.</summary>
    public static TOption OutputPath<TOption>(this TOption option, bool isDirectory)
        where TOption : Option =>
        option.Rule(r => r.GetValueOrDefault<string?>() is { } path ? OutputError(path, isDirectory) : null);

    /// <summary>Why <paramref name="path"/> cannot be read as a file, or null when it can.</summary>
    public static string? FileError(string path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            return "expected a file path, got an empty string";
        }
        // Checked before opening: opening a pipe would block.
        if (RegularFile.Check(path) is { } problem)
        {
            return $"'{path}' {RegularFile.Describe(problem)}";
        }
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return null;
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            return $"'{path}' cannot be read: {e.Message}";
        }
    }

    // Where a file or directory can be created: the nearest existing folder (the run directory
    // itself, when it exists) is a folder in which a file can be created, e.g. not on a read-only disk.
    private static string? OutputError(string path, bool isDirectory)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            return "expected a path, got an empty string";
        }
        if (isDirectory ? File.Exists(path) : Directory.Exists(path))
        {
            return isDirectory ? $"'{path}' is a file; expected a run directory" : $"'{path}' is a folder; expected a file path";
        }
        var full = Path.GetFullPath(path);
        for (var folder = isDirectory && Directory.Exists(full) ? full : Path.GetDirectoryName(full); folder is not null; folder = Path.GetDirectoryName(folder))
        {
            if (Directory.Exists(folder))
            {
                return WriteError(folder) is { } reason ? $"'{path}' cannot be written: no file can be created in '{folder}' ({reason})" : null;
            }
            if (File.Exists(folder))
            {
                return $"'{path}' cannot be created: '{folder}' is a file, not a folder";
            }
        }
        return null;
    }

    // Why no file can be created in the folder, or null when one can: the only exact test (permissions,
    // read-only mounts, ACLs) is to create one. It is deleted as it is closed and named like the
    // temporary files an interrupted save leaves, which run directories clear.
    private static string? WriteError(string folder)
    {
        try
        {
            using var probe = new FileStream(Path.Combine(folder, $".updp-write-check.{Guid.NewGuid():N}.tmp"),
                FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return AtomicFile.Reason(e);
        }
    }

    // Numbers are read in the invariant culture, where ',' separates thousands: "0,001" would be 1.
    private static string? SeparatorError(OptionResult result) =>
        result.Tokens.FirstOrDefault(t => t.Value.Contains(',', StringComparison.Ordinal)) is { } token
            ? $"expected a number with a decimal point, e.g. 0.001, got '{token.Value}' (',' is not accepted)"
            : null;

    private static string IntegerError(long min, long max, long value) =>
        max == long.MaxValue || max == int.MaxValue
            ? string.Create(CultureInfo.InvariantCulture, $"expected an integer ≥ {min}, got {value}")
            : string.Create(CultureInfo.InvariantCulture, $"expected an integer from {min} to {max}, got {value}");

    private static string? NumberError(double value, double min, double max, bool minOpen, bool maxOpen)
    {
        var inside = double.IsFinite(value) && (minOpen ? value > min : value >= min) && (maxOpen ? value < max : value <= max);
        if (inside)
        {
            return null;
        }
        var c = CultureInfo.InvariantCulture;
        var interval = double.IsPositiveInfinity(max)
            ? string.Create(c, $"{(minOpen ? ">" : "≥")} {min:G}")
            : string.Create(c, $"in {(minOpen ? "(" : "[")}{min:G}, {max:G}{(maxOpen ? ")" : "]")}");
        return string.Create(c, $"expected a finite number {interval}, got {value:G}");
    }

    private static TOption Rule<TOption>(this TOption option, Func<OptionResult, string?> error)
        where TOption : Option
    {
        option.Validators.Add(result =>
        {
            // Values that did not parse already carry the parser's error.
            if (result.Errors.Any() || result.Implicit)
            {
                return;
            }
            string? message;
            try
            {
                message = error(result);
            }
            catch (InvalidOperationException)
            {
                // A custom parser rejected the value and reported it on the argument.
                return;
            }
            if (message is not null)
            {
                result.AddError($"{option.Name}: {message}");
            }
        });
        return option;
    }
}
