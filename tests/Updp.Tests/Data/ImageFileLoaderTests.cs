using Updp.Data;
using static TorchSharp.torch;

namespace Updp.Tests.Data;

public class ImageFileLoaderTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private DataSplits Load()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", classes: 3, perClass: 8, seed: 7);
        return DatasetCatalog.Resolve(_dir.Path).LoadSplits(3, seed: 0);
    }

    [Fact]
    public void BatchesHaveTheModelsChannelsAndDoNotDependOnTheThreadCount()
    {
        var splits = Load();
        var preprocessing = Preprocessing.ResizeCrop(32, 3);
        float[][] Epoch(int workers) => [.. new BatchLoader(splits.Train, preprocessing.TrainingTransform(0, true),
                new BatchLoaderOptions { BatchSize = 8, Shuffle = true, DropLast = true, Seed = 3, Workers = workers })
            .Epoch(1).Select(b => { using (b) { Assert.Equal([8L, 3, 32, 32], b.Images.shape); return b.Images.data<float>().ToArray(); } })];

        var one = Epoch(1);
        var two = Epoch(2);

        Assert.Equal(one.Length, two.Length);
        for (var i = 0; i < one.Length; i++)
        {
            Assert.Equal(one[i], two[i]);
        }
        var otherEpoch = new BatchLoader(splits.Train, preprocessing.TrainingTransform(0, true),
            new BatchLoaderOptions { BatchSize = 8, Shuffle = true, Seed = 3 }).Epoch(2).First();
        using (otherEpoch)
        {
            Assert.NotEqual(one[0], otherEpoch.Images.data<float>().ToArray());
        }
    }

    [Fact]
    public void OneChannelModelsGetPilsLuma()
    {
        var splits = Load();
        var set = (ImageFileSet)splits.Train;
        var gray = Preprocessing.ResizeCrop(16, 1, new ChannelNormalization([0f], [1f]), cropPct: 1.0);
        using var batch = new BatchLoader(set, gray.EvaluationTransform(), new BatchLoaderOptions { BatchSize = 1 }).Epoch(0).First();

        var rgb = ImageReader.Default.Read(set.PathOf(0), 3);
        var expected = new float[16 * 16];
        ResizeCropTransform.ForEvaluation(16, new ChannelNormalization([0f], [1f]), Interpolation.Bicubic, 1.0)
            .Apply(ImageReader.ToGray(rgb), new Random(0), expected);
        Assert.Equal([1L, 1, 16, 16], batch.Images.shape);
        Assert.Equal(expected, batch.Images.data<float>().ToArray());
    }

    [Fact]
    public void TheCacheGivesTheSameEvaluationBatchesAndIsRebuiltWhenAFileChanges()
    {
        var splits = Load();
        var preprocessing = Preprocessing.ResizeCrop(24, 3, cropPct: 0.875, interpolation: Interpolation.Bilinear);
        var cacheDir = _dir.File("cache");
        float[] All(DataSplits s) => [.. TrainingRunBatches(s.Train, preprocessing).SelectMany(x => x)];

        var decoded = All(splits);
        var cached = splits.WithCache(cacheDir, preprocessing);
        var fromCache = All(cached);

        Assert.IsType<ImageFileSet>(cached.Train);
        Assert.NotNull(((ImageFileSet)cached.Train).Cache);
        Assert.Equal(decoded, fromCache);
        // One cache file per split (train and the carved validation split), reused when nothing changed.
        var first = Directory.GetFiles(cacheDir).Order().ToArray();
        Assert.Equal(2, first.Length);
        _ = splits.WithCache(cacheDir, preprocessing);
        Assert.Equal(first, Directory.GetFiles(cacheDir).Order().ToArray());

        // Rewriting one training image makes a new train cache and removes the stale one.
        var changed = ((ImageFileSet)splits.Train).PathOf(0);
        ImageFolderFixture.Write(changed, "png", new byte[30 * 30 * 3], 30, 30);
        File.SetLastWriteTimeUtc(changed, DateTime.UtcNow.AddMinutes(1));
        var rebuilt = splits.WithCache(cacheDir, preprocessing);
        var second = Directory.GetFiles(cacheDir).Order().ToArray();
        Assert.Equal(2, second.Length);
        Assert.Single(second.Except(first));
        Assert.NotEqual(decoded, All(rebuilt));
        Assert.Equal(All(splits with { Train = ((ImageFileSet)splits.Train) }), All(rebuilt));
    }

    private static IEnumerable<float[]> TrainingRunBatches(ImageDataset set, Preprocessing preprocessing) =>
        new BatchLoader(set, preprocessing.EvaluationTransform(), new BatchLoaderOptions { BatchSize = 5 })
            .Epoch(0).Select(b => { using (b) { return b.Images.data<float>().ToArray(); } });
}
