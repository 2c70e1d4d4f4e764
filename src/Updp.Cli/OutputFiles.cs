namespace Updp.Cli;

/// <summary>
/// The files a verb writes: checked before any work so that nothing the user did not ask to
/// replace is replaced. An existing file is refused unless <c>--force</c> is given, and a file
/// that is also one of the verb's inputs, or an empty file, a pipe or a device, is refused always
/// (the input would be read while it is replaced, or lost if the run fails; a device is not ours to replace).
/// </summary>
internal static class OutputFiles
{
    /// <summary>Throws unless every one of <paramref name="outputs"/> may be written.</summary>
    /// <param name="option">The option that names the output, for the message.</param>
    /// <param name="outputs">The files the verb will write (e.g. a checkpoint and its sidecar).</param>
    /// <param name="force">Whether the user allowed replacing existing files.</param>
    /// <param name="inputs">The files the verb reads (null entries are ignored).</param>
    public static void Check(string option, IEnumerable<string> outputs, bool force, params string?[] inputs)
    {
        var read = inputs.OfType<string>().Select(Path.GetFullPath).ToHashSet(StringComparer.Ordinal);
        foreach (var output in outputs)
        {
            var full = Path.GetFullPath(output);
            if (read.Contains(full) || (File.Exists(full) && read.Any(i => File.Exists(i) && SameFile(i, full))))
            {
                throw new ArgumentException($"{option} '{output}' is also an input of this command; write to another file");
            }
            // A pipe or a device (as /dev/null) reports length 0, as an empty file does; --force would
            // rename a new file over it, which as root replaces the device itself.
            if (File.Exists(full) && RegularFile.Check(full) == RegularFileProblem.Empty)
            {
                throw new ArgumentException($"{option} '{output}' exists and {RegularFile.Describe(RegularFileProblem.Empty)}; remove it or choose another path");
            }
            if (File.Exists(full) && !force)
            {
                throw new ArgumentException($"{option} '{output}' exists; give --force to replace it, or choose another path");
            }
        }
    }

    // Two paths that name one file through a link.
    private static bool SameFile(string a, string b)
    {
        static string Resolve(string p) => new FileInfo(p).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(p);
        return string.Equals(Resolve(a), Resolve(b), StringComparison.Ordinal);
    }
}
