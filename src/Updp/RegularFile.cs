namespace Updp;

/// <summary>
/// What the library reads must be a regular file with something in it: opening a named pipe blocks
/// until some other process writes to it (forever, if none does), and a device never ends. Both
/// report a length of 0, as an empty file does, which no file the library reads can be.
/// </summary>
public static class RegularFile
{
    /// <summary>Throws an <see cref="InvalidDataException"/> naming <paramref name="what"/> and the path unless it is a non-empty regular file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static void Require(string path, string what)
    {
        ArgumentNullException.ThrowIfNull(path);
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new FileNotFoundException($"{what} '{path}' does not exist", path);
        }
        if (info.Length == 0)
        {
            throw new InvalidDataException($"{what} '{path}' is empty or not a regular file (a pipe or a device)");
        }
    }
}
