using Updp.Data;

namespace Updp.Tests.Data;

/// <summary>
/// The system copy of Fashion-MNIST, read once per test run. Tests using it fail, rather than
/// skip, when it is absent, because a skipped real-data test hides a broken setup.
/// </summary>
internal static class FashionMnistFiles
{
    public const string Directory = "/usr/share/datasets/fashion-mnist";

    private static readonly Lazy<LabeledImages> LazyTrain = new(() => Load("train"));
    private static readonly Lazy<LabeledImages> LazyTest = new(() => Load("t10k"));

    public static LabeledImages Train => LazyTrain.Value;

    public static LabeledImages Test => LazyTest.Value;

    public static string RequirePath(string fileName)
    {
        Assert.True(
            System.IO.Directory.Exists(Directory),
            $"Fashion-MNIST is missing from {Directory}: install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist).");
        var path = Path.Combine(Directory, fileName);
        Assert.True(File.Exists(path), $"{path} is missing: reinstall the Debian package dataset-fashion-mnist.");
        return path;
    }

    private static LabeledImages Load(string prefix) =>
        LabeledImages.FromIdxFiles(
            RequirePath($"{prefix}-images-idx3-ubyte.gz"), RequirePath($"{prefix}-labels-idx1-ubyte.gz"), DatasetCatalog.FashionMnistClassNames);
}
