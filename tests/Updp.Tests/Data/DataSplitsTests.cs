using Updp.Data;

namespace Updp.Tests.Data;

public class DataSplitsTests
{
    [Fact]
    public void SameSeedGivesSameSplit()
    {
        var first = DataSplits.SplitIndices(1000, 100, seed: 7);
        var second = DataSplits.SplitIndices(1000, 100, seed: 7);

        Assert.Equal(first.Train, second.Train);
        Assert.Equal(first.Validation, second.Validation);
    }

    [Fact]
    public void DifferentSeedsPickDifferentValidationImages()
    {
        var a = DataSplits.SplitIndices(1000, 100, seed: 7).Validation;
        var b = DataSplits.SplitIndices(1000, 100, seed: 8).Validation;

        Assert.NotEqual(a, b);
    }

    [Fact]
    public void SplitsAreDisjointAndCoverEverything()
    {
        var (train, validation) = DataSplits.SplitIndices(1000, 100, seed: 7);

        Assert.Equal(900, train.Length);
        Assert.Equal(100, validation.Length);
        Assert.Empty(train.Intersect(validation));
        Assert.Equal(Enumerable.Range(0, 1000), train.Concat(validation).Order());
    }

    [Fact]
    public void ValidationIsASpreadOutSampleNotAPrefix()
    {
        var (_, validation) = DataSplits.SplitIndices(1000, 100, seed: 7);

        Assert.NotEqual(Enumerable.Range(0, 100), validation);
        Assert.True(validation.Max() > 900, "a seeded shuffle should reach the end of the set");
    }

    [Fact]
    public void CreateMovesTheChosenImagesWithTheirLabels()
    {
        // Each 1x2 image encodes its own index, and its label is derived from it, so every
        // image in a split can be traced back to where it came from.
        const int count = 300;
        var pixels = new byte[count * 2];
        var labels = new byte[count];
        for (var i = 0; i < count; i++)
        {
            pixels[2 * i] = (byte)(i / 256);
            pixels[(2 * i) + 1] = (byte)(i % 256);
            labels[i] = (byte)(i % 7);
        }

        var full = new LabeledImages(pixels, labels, 1, 2, LabeledImages.NumberedClassNames(7));
        var test = full.Take(3);

        var splits = DataSplits.Create(full, test, validationCount: 40, seed: 5);

        var expected = DataSplits.SplitIndices(count, 40, seed: 5);
        Assert.Equal(expected.Train, Origins((LabeledImages)splits.Train));
        Assert.Equal(expected.Validation, Origins((LabeledImages)splits.Validation));
        Assert.All(Enumerable.Range(0, splits.Validation.Count), i => Assert.Equal(Origins((LabeledImages)splits.Validation)[i] % 7, splits.Validation.LabelOf(i)));
        Assert.Same(test, splits.Test);
    }

    [Fact]
    public void TooLargeValidationIsRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DataSplits.SplitIndices(10, 11, seed: 0));
    }

    [Fact]
    public void TakeAndSubsetCopyTheRightImages()
    {
        var images = new LabeledImages([1, 2, 3, 4, 5, 6], [0, 1, 2], 1, 2, ["a", "b", "c"]);

        var firstTwo = images.Take(2);
        var reordered = images.Subset([2, 0]);

        Assert.Equal(new byte[] { 1, 2, 3, 4 }, firstTwo.Pixels.ToArray());
        Assert.Equal(new byte[] { 0, 1 }, firstTwo.Labels.ToArray());
        Assert.Same(images, images.Take(99));
        Assert.Equal(new byte[] { 5, 6, 1, 2 }, reordered.Pixels.ToArray());
        Assert.Equal(new byte[] { 2, 0 }, reordered.Labels.ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => images.Subset([3]));
    }

    private static int[] Origins(LabeledImages images) =>
        Enumerable.Range(0, images.Count).Select(i => (images.GetImage(i)[0] * 256) + images.GetImage(i)[1]).ToArray();
}
