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

    /// <summary>
    /// Throws when one of <paramref name="inputs"/> (or its sidecar) is a file the run in the run
    /// directory <paramref name="outDir"/> writes, or deletes with <c>--force</c>: e.g. <c>train
    /// --checkpoint DIR/model.safetensors --out DIR --force</c> would replace the weights it starts
    /// from, and lose them if the run fails (docs/RELIABILITY.md, "Existing outputs").
    /// </summary>
    /// <param name="runFiles">The files of the run (<c>RunDirectory.RunFilesOf</c>, <c>PruneRun.Files</c>).</param>
    /// <param name="inputs">The checkpoints the command reads (null entries are ignored).</param>
    public static void CheckRunDirectory(string outDir, IEnumerable<string> runFiles, params string?[] inputs)
    {
        var written = runFiles.Select(Path.GetFullPath).ToList();
        foreach (var input in inputs.OfType<string>().SelectMany(i => new[] { i, Checkpoints.Checkpoint.SidecarPath(i) }))
        {
            var full = Path.GetFullPath(input);
            if (written.FirstOrDefault(w => w == full || (File.Exists(w) && File.Exists(full) && SameFile(w, full))) is { } clash)
            {
                throw new ArgumentException(
                    $"--out '{outDir}' is the run directory of the input '{input}': the run writes '{Path.GetFileName(clash)}' there; choose another --out");
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
