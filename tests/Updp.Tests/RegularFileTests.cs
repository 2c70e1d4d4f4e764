using System.Diagnostics;
using Updp.Cli;
using Updp.Data;

namespace Updp.Tests;

/// <summary>
/// The library, the image reader and the command line refuse a path that is not a non-empty regular
/// file with one check (<see cref="RegularFile.Check"/>): the same words, each in its own exception
/// type or message, and a named pipe is refused without being opened.
/// </summary>
public class RegularFileTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void EveryReaderRefusesAMissingFileAFolderAnEmptyFileAndAPipeInTheSameWords()
    {
        var fifo = _dir.File("pipe");
        using (var mkfifo = Process.Start("mkfifo", [fifo]))
        {
            mkfifo.WaitForExit();
            Assert.Equal(0, mkfifo.ExitCode);
        }
        Directory.CreateDirectory(_dir.File("folder"));
        var cases = new (string Path, RegularFileProblem Problem, string Words, string ImageWords)[]
        {
            (_dir.File("missing"), RegularFileProblem.Missing, "does not exist", "does not exist"),
            (_dir.File("folder"), RegularFileProblem.Folder, "is a folder, not a file", "is a folder, not an image file"),
            (_dir.Write("empty", []), RegularFileProblem.Empty, "is empty or not a regular file (a pipe or a device)", "is empty or not a regular file (a pipe or a device)"),
            (fifo, RegularFileProblem.Empty, "is empty or not a regular file (a pipe or a device)", "is empty or not a regular file (a pipe or a device)"),
        };
        foreach (var (path, problem, words, imageWords) in cases)
        {
            Assert.Equal(problem, RegularFile.Check(path));

            var library = Assert.ThrowsAny<Exception>(() => RegularFile.Require(path, "latency table"));
            Assert.Equal($"latency table '{path}' {words}", library.Message);
            Assert.IsType(problem == RegularFileProblem.Missing ? typeof(FileNotFoundException) : typeof(InvalidDataException), library);

            var image = Assert.Throws<BadImageException>(() => ImageReader.RequireRegularFile(path));
            Assert.Equal($"image '{path}': {imageWords}", image.Message);

            Assert.Equal($"'{path}' {words}", OptionRules.FileError(path));
        }
        var file = _dir.Write("ok", [1]);
        Assert.Null(RegularFile.Check(file));
        RegularFile.Require(file, "latency table");
        ImageReader.RequireRegularFile(file);
        Assert.Null(OptionRules.FileError(file));
    }
}
