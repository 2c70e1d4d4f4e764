namespace Updp;

/// <summary>What is wrong with a path that should name a file to read (<see cref="RegularFile.Check"/>).</summary>
public enum RegularFileProblem
{
    /// <summary>Nothing is there.</summary>
    Missing,

    /// <summary>A folder is there.</summary>
    Folder,

    /// <summary>A file of length 0: empty, or a named pipe or device, which report length 0 too.</summary>
    Empty,
}

/// <summary>
/// What the library reads must be a regular file with something in it: opening a named pipe blocks
/// until some other process writes to it (forever, if none does), and a device never ends. Both
/// report a length of 0, as an empty file does, which no file the library reads can be. The one
/// check behind every reader's (and the command line's) refusal; each caller picks its exception.
/// </summary>
public static class RegularFile
{
    /// <summary>What is wrong with <paramref name="path"/> as a file to read, or null when it is a non-empty regular file.</summary>
    public static RegularFileProblem? Check(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
        {
            return RegularFileProblem.Folder;
        }
        var info = new FileInfo(path);
        return !info.Exists ? RegularFileProblem.Missing
            : info.Length == 0 ? RegularFileProblem.Empty
            : null;
    }

    /// <summary>
    /// The problem as words that follow the path in a message, e.g. <c>is a folder, not a file</c>;
    /// <paramref name="expected"/> names what the path should have been (<c>an image file</c>).
    /// </summary>
    public static string Describe(RegularFileProblem problem, string expected = "a file") => problem switch
    {
        RegularFileProblem.Missing => "does not exist",
        RegularFileProblem.Folder => $"is a folder, not {expected}",
        RegularFileProblem.Empty => "is empty or not a regular file (a pipe or a device)",
        _ => throw new ArgumentOutOfRangeException(nameof(problem), problem, null),
    };

    /// <summary>Throws naming <paramref name="what"/> and the path unless it is a non-empty regular file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">It is a folder, empty, or not a regular file.</exception>
    public static void Require(string path, string what)
    {
        if (Check(path) is { } problem)
        {
            var message = $"{what} '{path}' {Describe(problem)}";
            throw problem == RegularFileProblem.Missing ? new FileNotFoundException(message, path) : new InvalidDataException(message);
        }
    }
}
