using Updp.Data;

namespace Updp.Tests.Data;

public sealed class DatasetCatalogTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void UserDirectoryWinsOverSystemDirectory()
    {
        var user = Path.Combine(_dir.Path, "user");
        var system = Path.Combine(_dir.Path, "system");
        WriteDataset(Path.Combine(user, "mnist"), gzip: true);
        WriteDataset(Path.Combine(system, "mnist"), gzip: true);

        var source = DatasetCatalog.Resolve("mnist", user, system);

        Assert.Equal(Path.Combine(user, "mnist"), source.DirectoryPath);
        Assert.Equal(Path.Combine(user, "mnist", "t10k-labels-idx1-ubyte.gz"), source.TestLabelsPath);
        Assert.Equal(LabeledImages.NumberedClassNames(10), source.ClassNames);
        Assert.Same(Normalization.Mnist, source.Normalization);
    }

    [Fact]
    public void FallsBackToSystemDirectoryWhenUserOneLacksTheDataset()
    {
        var system = Path.Combine(_dir.Path, "system");
        WriteDataset(Path.Combine(system, "fashion-mnist"), gzip: false);

        var source = DatasetCatalog.Resolve("Fashion-MNIST", Path.Combine(_dir.Path, "nothing-here"), system);

        Assert.Equal(Path.Combine(system, "fashion-mnist", "train-images-idx3-ubyte"), source.TrainImagesPath);
        Assert.Equal("Trouser", source.ClassNames![1]);
        Assert.Same(Normalization.FashionMnist, source.Normalization);
    }

    [Fact]
    public void MissingFashionMnistNamesPlacesAndDebianPackage()
    {
        var user = Path.Combine(_dir.Path, "user");
        var system = Path.Combine(_dir.Path, "system");

        var e = Assert.Throws<DirectoryNotFoundException>(() => DatasetCatalog.Resolve("fashion-mnist", user, system));

        Assert.Contains(Path.Combine(user, "fashion-mnist"), e.Message);
        Assert.Contains(Path.Combine(system, "fashion-mnist"), e.Message);
        Assert.Contains("dataset-fashion-mnist", e.Message);
        Assert.Contains("UPDP_DATA", e.Message);
    }

    [Fact]
    public void UnknownNameThatIsNoDirectoryIsExplained()
    {
        var e = Assert.Throws<DirectoryNotFoundException>(() => DatasetCatalog.Resolve("cifar10", null, _dir.Path));

        Assert.Contains("'cifar10'", e.Message);
        Assert.Contains("fashion-mnist", e.Message);
        Assert.Contains("train-images-idx3-ubyte", e.Message);
    }

    [Fact]
    public void DirectoryMissingOneFileNamesThatFile()
    {
        var dataset = Path.Combine(_dir.Path, "custom");
        WriteDataset(dataset, gzip: true);
        File.Delete(Path.Combine(dataset, "train-labels-idx1-ubyte.gz"));

        var e = Assert.Throws<FileNotFoundException>(() => DatasetCatalog.Resolve(dataset, null, _dir.Path));

        Assert.Contains("training labels", e.Message);
        Assert.Contains(Path.Combine(dataset, "train-labels-idx1-ubyte"), e.Message);
    }

    [Fact]
    public void CustomDirectoryNumbersClassesAndComputesNormalization()
    {
        var dataset = Path.Combine(_dir.Path, "custom");
        Directory.CreateDirectory(dataset);
        _dir.Write("custom/train-images-idx3-ubyte", IdxBytes.Images(20, 2, 2, i => (byte)(i % 2 == 0 ? 0 : 255)));
        _dir.Write("custom/train-labels-idx1-ubyte", IdxBytes.Labels(20, i => (byte)(i % 3)));
        _dir.WriteGzip("custom/t10k-images-idx3-ubyte.gz", IdxBytes.Images(4, 2, 2));
        _dir.WriteGzip("custom/t10k-labels-idx1-ubyte.gz", IdxBytes.Labels(4, i => (byte)i));

        var splits = DatasetCatalog.Resolve(dataset, null, _dir.Path).LoadSplits(validationCount: 5, seed: 3);

        Assert.Equal((15, 5, 4), (splits.Train.Count, splits.Validation.Count, splits.Test.Count));
        Assert.Equal(["0", "1", "2", "3"], splits.Train.ClassNames);
        Assert.Equal(splits.Train.ClassNames, splits.Test.ClassNames);
        Assert.Equal(0.5f, splits.Normalization.Mean, 1e-6f);
        Assert.Equal(0.5f, splits.Normalization.Std, 1e-6f);
    }

    [Fact]
    public void CountMismatchNamesBothFilesAndCounts()
    {
        var images = _dir.Write("train-images-idx3-ubyte", IdxBytes.Images(5, 3, 3));
        var labels = _dir.WriteGzip("train-labels-idx1-ubyte.gz", IdxBytes.Labels(4));

        var e = Assert.Throws<InvalidDataException>(() => LabeledImages.FromIdxFiles(images, labels));

        Assert.Contains(images, e.Message);
        Assert.Contains(labels, e.Message);
        Assert.Contains("5 images", e.Message);
        Assert.Contains("4 labels", e.Message);
    }

    [Fact]
    public void LabelBeyondClassNamesNamesFileAndLabel()
    {
        var images = _dir.Write("images", IdxBytes.Images(3, 1, 1));
        var labels = _dir.Write("labels", IdxBytes.Labels(3, i => (byte)(i * 6)));

        var e = Assert.Throws<InvalidDataException>(() => LabeledImages.FromIdxFiles(images, labels, ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]));

        Assert.Contains(labels, e.Message);
        Assert.Contains("label 12 at index 2", e.Message);
    }

    private static void WriteDataset(string directory, bool gzip)
    {
        Directory.CreateDirectory(directory);
        var suffix = gzip ? ".gz" : "";
        foreach (var (name, bytes) in new[]
        {
            ("train-images-idx3-ubyte", IdxBytes.Images(4, 2, 2)),
            ("train-labels-idx1-ubyte", IdxBytes.Labels(4)),
            ("t10k-images-idx3-ubyte", IdxBytes.Images(2, 2, 2)),
            ("t10k-labels-idx1-ubyte", IdxBytes.Labels(2)),
        })
        {
            File.WriteAllBytes(Path.Combine(directory, name + suffix), bytes);
        }
    }
}
