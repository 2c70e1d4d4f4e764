using System.IO.Compression;

namespace Updp.Tests.Data;

/// <summary>A scratch directory for one test, removed on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = Directory.CreateTempSubdirectory("updp-data-tests-").FullName;
    }

    public string Path { get; }

    public string Write(string name, byte[] contents)
    {
        var path = System.IO.Path.Combine(Path, name);
        File.WriteAllBytes(path, contents);
        return path;
    }

    public string WriteGzip(string name, byte[] contents)
    {
        var path = System.IO.Path.Combine(Path, name);
        using var file = File.Create(path);
        using var gzip = new GZipStream(file, CompressionLevel.Fastest);
        gzip.Write(contents);
        return path;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
