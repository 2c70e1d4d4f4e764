using TorchSharp;
using Updp.Data;

namespace Updp.Tests.Data;

public class BatchLoaderTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public void ShuffledEpochVisitsEveryImageExactlyOnceWithItsLabel()
    {
        var images = SelfDescribingImages(203);
        var loader = new BatchLoader(images, ImageTransform.ForEvaluation(Normalization.Identity, targetSize: 2),
            new BatchLoaderOptions { BatchSize = 16, Shuffle = true, Seed = 4 });

        var seen = new List<int>();
        var sizes = new List<int>();
        foreach (var batch in loader.Epoch(0))
        {
            using (batch)
            {
                var origins = Origins(batch);
                var labels = batch.Labels.data<long>().ToArray();
                Assert.Equal(origins.Select(o => (long)(o % 10)), labels);
                seen.AddRange(origins);
                sizes.Add(batch.Count);
            }
        }

        Assert.Equal(13, loader.BatchesPerEpoch);
        Assert.Equal([.. Enumerable.Repeat(16, 12), 11], sizes);
        Assert.Equal(Enumerable.Range(0, 203), seen.Order());
        Assert.NotEqual(Enumerable.Range(0, 203), seen);
    }

    [Fact]
    public void EpochsAreShuffledDifferentlyButRepeatably()
    {
        var images = SelfDescribingImages(50);
        var options = new BatchLoaderOptions { BatchSize = 50, Shuffle = true, Seed = 9 };
        var transform = ImageTransform.ForEvaluation(Normalization.Identity, targetSize: 2);
        int[] OrderOf(BatchLoader loader, int epoch) => loader.Epoch(epoch).SelectMany(b => { using (b) { return Origins(b); } }).ToArray();

        var loader = new BatchLoader(images, transform, options);
        var again = new BatchLoader(images, transform, options);

        Assert.Equal(OrderOf(loader, 1), OrderOf(again, 1));
        Assert.NotEqual(OrderOf(loader, 1), OrderOf(loader, 2));
    }

    [Fact]
    public void UnshuffledEpochKeepsTheOriginalOrder()
    {
        var loader = new BatchLoader(SelfDescribingImages(30), ImageTransform.ForEvaluation(Normalization.Identity, targetSize: 2),
            new BatchLoaderOptions { BatchSize = 7 });

        var seen = loader.Epoch(3).SelectMany(b => { using (b) { return Origins(b); } });

        Assert.Equal(Enumerable.Range(0, 30), seen);
    }

    [Fact]
    public void BatchesHaveNchwFloatImagesAndInt64Labels()
    {
        var images = new LabeledImages(new byte[10 * 28 * 28], new byte[10], 28, 28, LabeledImages.NumberedClassNames(10));
        var loader = new BatchLoader(images, ImageTransform.ForTraining(Normalization.FashionMnist), new BatchLoaderOptions { BatchSize = 4 });

        var batches = loader.Epoch(0).ToList();

        Assert.Equal(3, loader.BatchesPerEpoch);
        Assert.Equal(3, batches.Count);
        Assert.Equal([4, 1, 32, 32], batches[0].Images.shape);
        Assert.Equal([2, 1, 32, 32], batches[2].Images.shape);
        Assert.Equal(torch.ScalarType.Float32, batches[0].Images.dtype);
        Assert.Equal([4], batches[0].Labels.shape);
        Assert.Equal(torch.ScalarType.Int64, batches[0].Labels.dtype);
        batches.ForEach(b => b.Dispose());
    }

    [Fact]
    public void TensorsJoinTheDisposeScopeOfTheEnumeratingThread()
    {
        var loader = new BatchLoader(SelfDescribingImages(20), ImageTransform.ForEvaluation(Normalization.Identity, targetSize: 2),
            new BatchLoaderOptions { BatchSize = 6 });
        var batches = new List<Batch>();

        using (torch.NewDisposeScope())
        {
            foreach (var batch in loader.Epoch(0))
            {
                batches.Add(batch);
            }

            batches[0].Dispose(); // disposing early must not upset the scope
            Assert.False(batches[1].Images.IsInvalid);
        }

        Assert.All(batches, b => Assert.True(b.Images.IsInvalid && b.Labels.IsInvalid));
    }

    [Fact]
    public void KeptBatchesDoNotChangeWhenLaterBatchesArePrepared()
    {
        // The loader recycles its float buffers, which is only safe while torch.tensor copies them.
        var loader = new BatchLoader(RandomImages(40, seed: 3), ImageTransform.ForTraining(Normalization.FashionMnist),
            new BatchLoaderOptions { BatchSize = 4, PrefetchBatches = 2, Shuffle = true });
        var kept = new List<(Batch Batch, float[] AtYield)>();

        foreach (var batch in loader.Epoch(0))
        {
            kept.Add((batch, batch.Images.data<float>().ToArray()));
        }

        Assert.All(kept, k => Assert.Equal(k.AtYield, k.Batch.Images.data<float>().ToArray()));
        kept.ForEach(k => k.Batch.Dispose());
    }

    [Fact]
    public void DropLastSkipsTheShortBatch()
    {
        var loader = new BatchLoader(SelfDescribingImages(30), ImageTransform.ForEvaluation(Normalization.Identity, targetSize: 2),
            new BatchLoaderOptions { BatchSize = 7, Shuffle = true, DropLast = true });

        var sizes = loader.Epoch(0).Select(b => { using (b) { return b.Count; } }).ToList();

        Assert.Equal(4, loader.BatchesPerEpoch);
        Assert.Equal([7, 7, 7, 7], sizes);
    }

    [Fact]
    public void SameSeedAndEpochGiveIdenticalAugmentedBatches()
    {
        var images = RandomImages(40, seed: 2);
        var options = new BatchLoaderOptions { BatchSize = 16, Shuffle = true, Seed = 5 };
        float[] FirstBatch(int epoch)
        {
            var loader = new BatchLoader(images, ImageTransform.ForTraining(Normalization.FashionMnist), options);
            using var batch = loader.Epoch(epoch).First();
            return batch.Images.data<float>().ToArray();
        }

        Assert.Equal(FirstBatch(0), FirstBatch(0));
        Assert.NotEqual(FirstBatch(0), FirstBatch(1));
    }

    [Fact]
    public async Task LeavingEarlyStopsTheBackgroundThread()
    {
        var prepared = 0;
        var loader = new BatchLoader(RandomImages(400, seed: 1), ImageTransform.ForTraining(Normalization.FashionMnist),
            new BatchLoaderOptions { BatchSize = 4, PrefetchBatches = 2 })
        {
            BeforeBatchPrepared = _ => Interlocked.Increment(ref prepared),
        };

        var run = Task.Run(() =>
        {
            foreach (var batch in loader.Epoch(0))
            {
                batch.Dispose();
                break;
            }
        });

        await run.WaitAsync(Patience); // a TimeoutException here means disposing the enumerator hung
        var afterDispose = Volatile.Read(ref prepared);
        await Task.Delay(100);
        Assert.Equal(afterDispose, Volatile.Read(ref prepared));
        Assert.InRange(afterDispose, 1, 5);
    }

    [Fact]
    public async Task ProducerExceptionSurfacesAfterEarlierBatches()
    {
        var loader = new BatchLoader(SelfDescribingImages(40), ImageTransform.ForEvaluation(Normalization.Identity, targetSize: 2),
            new BatchLoaderOptions { BatchSize = 5 })
        {
            BeforeBatchPrepared = batch =>
            {
                if (batch == 3)
                {
                    throw new InvalidDataException("image 17 is unreadable");
                }
            },
        };

        var received = 0;
        var run = Task.Run(() =>
        {
            foreach (var batch in loader.Epoch(0))
            {
                batch.Dispose();
                received++;
            }
        });

        var thrown = await Assert.ThrowsAsync<InvalidDataException>(() => run.WaitAsync(Patience));
        Assert.Equal("image 17 is unreadable", thrown.Message);
        Assert.Equal(3, received);
    }

    [Fact]
    public void EpochArgumentsAreCheckedBeforeEnumeration()
    {
        var loader = new BatchLoader(SelfDescribingImages(3), ImageTransform.ForEvaluation(Normalization.Identity));

        Assert.Throws<ArgumentOutOfRangeException>(() => loader.Epoch(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new BatchLoader(SelfDescribingImages(3), ImageTransform.ForEvaluation(Normalization.Identity), new BatchLoaderOptions { BatchSize = 0 }));
        Assert.Equal(3, loader.ImageCount);
    }

    // Each 2x2 image stores its own index in its first two pixels; its label is index % 10.
    private static LabeledImages SelfDescribingImages(int count)
    {
        var pixels = new byte[count * 4];
        var labels = new byte[count];
        for (var i = 0; i < count; i++)
        {
            pixels[4 * i] = (byte)(i / 256);
            pixels[(4 * i) + 1] = (byte)(i % 256);
            labels[i] = (byte)(i % 10);
        }

        return new LabeledImages(pixels, labels, 2, 2, LabeledImages.NumberedClassNames(10));
    }

    private static int[] Origins(Batch batch)
    {
        var values = batch.Images.data<float>().ToArray();
        return Enumerable.Range(0, batch.Count)
            .Select(i => ((int)MathF.Round(values[4 * i] * 255) * 256) + (int)MathF.Round(values[(4 * i) + 1] * 255))
            .ToArray();
    }

    private static LabeledImages RandomImages(int count, int seed)
    {
        var pixels = new byte[count * 28 * 28];
        new Random(seed).NextBytes(pixels);
        var labels = Enumerable.Range(0, count).Select(i => (byte)(i % 10)).ToArray();
        return new LabeledImages(pixels, labels, 28, 28, LabeledImages.NumberedClassNames(10));
    }
}
