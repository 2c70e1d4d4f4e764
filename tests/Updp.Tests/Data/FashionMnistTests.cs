using System.IO.Compression;
using Updp.Data;

namespace Updp.Tests.Data;

public class FashionMnistTests
{
    [Fact]
    public void TrainSetHas60000ImagesOf28x28With6000PerClass()
    {
        var train = FashionMnistFiles.Train;

        Assert.Equal(60000, train.Count);
        Assert.Equal(28, train.Height);
        Assert.Equal(28, train.Width);
        Assert.Equal(Enumerable.Repeat(6000, 10), train.CountPerClass());
    }

    [Fact]
    public void TestSetHas10000ImagesOf28x28With1000PerClass()
    {
        var test = FashionMnistFiles.Test;

        Assert.Equal(10000, test.Count);
        Assert.Equal(28, test.Height);
        Assert.Equal(28, test.Width);
        Assert.Equal(Enumerable.Repeat(1000, 10), test.CountPerClass());
    }

    [Fact]
    public void FirstTrainImageAndLabelMatchTheRawDecompressedBytes()
    {
        var labels = Decompress(FashionMnistFiles.RequirePath("train-labels-idx1-ubyte.gz"), 8 + 1);
        var images = Decompress(FashionMnistFiles.RequirePath("train-images-idx3-ubyte.gz"), 16 + 784);

        Assert.Equal(labels[8], FashionMnistFiles.Train.Labels[0]);
        Assert.Equal(9, labels[8]); // the first training image is an ankle boot
        Assert.Equal(images[16..], FashionMnistFiles.Train.GetImage(0).ToArray());
    }

    [Fact]
    public void KnownNormalizationMatchesTheTrainingPixels()
    {
        var computed = Normalization.ComputeFrom(FashionMnistFiles.Train);

        Assert.Equal(Normalization.FashionMnist.Mean, computed.Mean, 0.0005f);
        Assert.Equal(Normalization.FashionMnist.Std, computed.Std, 0.0005f);
    }

    [Fact]
    public void CatalogFindsSystemCopyAndSplits55000By5000By10000()
    {
        FashionMnistFiles.RequirePath("train-images-idx3-ubyte.gz");
        var source = DatasetCatalog.Resolve("fashion-mnist", userDataDirectory: null, DatasetCatalog.SystemDataDirectory);

        var splits = source.LoadSplits(seed: 1);

        Assert.Equal((55000, 5000, 10000), (splits.Train.Count, splits.Validation.Count, splits.Test.Count));
        Assert.Equal("Ankle boot", splits.Train.ClassNames[9]);
        Assert.Same(Normalization.FashionMnist, splits.Normalization);
        var combined = splits.Train.CountPerClass().Zip(splits.Validation.CountPerClass(), (a, b) => a + b);
        Assert.Equal(Enumerable.Repeat(6000, 10), combined);
    }

    private static byte[] Decompress(string path, int length)
    {
        using var gzip = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        var bytes = new byte[length];
        gzip.ReadExactly(bytes);
        return bytes;
    }
}
