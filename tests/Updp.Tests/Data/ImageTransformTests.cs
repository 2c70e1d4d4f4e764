using Updp.Data;

namespace Updp.Tests.Data;

public class ImageTransformTests
{
    private const int Side = 28;

    private static readonly byte[] Image = RandomImage(seed: 11);

    [Fact]
    public void EvaluationPadsTheImageIntoTheCentre()
    {
        var transform = ImageTransform.ForEvaluation(Normalization.Identity);

        var output = Run(transform, new Random(0));

        var expected = new float[32 * 32];
        for (var y = 0; y < 32; y++)
        {
            for (var x = 0; x < 32; x++)
            {
                var (sy, sx) = (y - 2, x - 2);
                var inside = sy is >= 0 and < Side && sx is >= 0 and < Side;
                expected[(y * 32) + x] = inside ? Image[(sy * Side) + sx] / 255f : 0f;
            }
        }

        Assert.Equal(expected, output);
    }

    [Fact]
    public void NormalisationMatchesTheFormulaIncludingPadding()
    {
        var normalization = new Normalization(0.2860f, 0.3530f);
        var transform = ImageTransform.ForEvaluation(normalization);
        var plain = Run(ImageTransform.ForEvaluation(Normalization.Identity), new Random(0));

        var output = Run(transform, new Random(0));

        for (var i = 0; i < output.Length; i++)
        {
            Assert.Equal((plain[i] - 0.2860f) / 0.3530f, output[i], 1e-5f);
        }

        Assert.Equal(-0.2860f / 0.3530f, output[0], 1e-6f);
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(8, 8)]
    [InlineData(3, 6)]
    [InlineData(7, 1)]
    public void CropAtAFixedOffsetIsTheNaiveSliceOfThePaddedImage(int top, int left)
    {
        var transform = ImageTransform.ForTraining(Normalization.Identity, cropPadding: 4);
        var output = new float[32 * 32];

        transform.Apply(Image, Side, Side, new Augmentation(top, left, Flip: false), output);

        // 28x28 centred in 32x32, then 4 more zero pixels on every side: 40x40.
        var padded = new float[40, 40];
        for (var y = 0; y < Side; y++)
        {
            for (var x = 0; x < Side; x++)
            {
                padded[y + 6, x + 6] = Image[(y * Side) + x] / 255f;
            }
        }

        for (var y = 0; y < 32; y++)
        {
            for (var x = 0; x < 32; x++)
            {
                Assert.Equal(padded[y + top, x + left], output[(y * 32) + x]);
            }
        }
    }

    [Fact]
    public void FlipIsAnExactMirrorOfTheSameCrop()
    {
        var transform = ImageTransform.ForTraining(Normalization.FashionMnist, cropPadding: 4);
        var straight = new float[32 * 32];
        var mirrored = new float[32 * 32];

        transform.Apply(Image, Side, Side, new Augmentation(2, 7, Flip: false), straight);
        transform.Apply(Image, Side, Side, new Augmentation(2, 7, Flip: true), mirrored);

        for (var y = 0; y < 32; y++)
        {
            for (var x = 0; x < 32; x++)
            {
                Assert.Equal(straight[(y * 32) + x], mirrored[(y * 32) + 31 - x]);
            }
        }

        Assert.NotEqual(straight, mirrored);
    }

    [Fact]
    public void SameSeedGivesSameOutputAndOtherSeedsDiffer()
    {
        var transform = ImageTransform.ForTraining(Normalization.FashionMnist, cropPadding: 4);
        float[] RunSeries(int seed)
        {
            var random = new Random(seed);
            return Enumerable.Range(0, 8).SelectMany(_ => Run(transform, random)).ToArray();
        }

        Assert.Equal(RunSeries(3), RunSeries(3));
        Assert.NotEqual(RunSeries(3), RunSeries(4));
    }

    [Fact]
    public void SampledCropsStayInRangeAndFlipBothWays()
    {
        var transform = ImageTransform.ForTraining(Normalization.Identity, cropPadding: 4);
        var random = new Random(1);

        var draws = Enumerable.Range(0, 2000).Select(_ => transform.Sample(random)).ToArray();

        Assert.Equal(Enumerable.Range(0, 9), draws.Select(d => d.CropTop).Distinct().Order());
        Assert.Equal(Enumerable.Range(0, 9), draws.Select(d => d.CropLeft).Distinct().Order());
        Assert.InRange(draws.Count(d => d.Flip), 900, 1100);
    }

    [Fact]
    public void EvaluationAtNativeSizeOnlyNormalises()
    {
        var transform = ImageTransform.ForEvaluation(Normalization.Identity, targetSize: Side);
        var output = new float[Side * Side];

        transform.Apply(Image, Side, Side, new Random(0), output);

        Assert.Equal(Image.Select(p => p / 255f), output);
        Assert.False(transform.IsRandom);
    }

    [Fact]
    public void MismatchedBuffersAreRejected()
    {
        var transform = ImageTransform.ForEvaluation(Normalization.Identity);

        Assert.Throws<ArgumentException>(() => transform.Apply(Image, Side, Side, new Random(0), new float[31 * 31]));
        Assert.Throws<ArgumentException>(() => transform.Apply(Image.AsSpan(1), Side, Side, new Random(0), new float[32 * 32]));
        Assert.Throws<ArgumentException>(() => ImageTransform.ForEvaluation(new Normalization(0.5f, 0f)));
    }

    private static float[] Run(ImageTransform transform, Random random)
    {
        var output = new float[transform.OutputLength];
        transform.Apply(Image, Side, Side, random, output);
        return output;
    }

    private static byte[] RandomImage(int seed)
    {
        var bytes = new byte[Side * Side];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
