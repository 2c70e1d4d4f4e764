using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using TorchSharp;

namespace Updp.Data;

/// <summary>
/// Cuts an <see cref="ImageDataset"/> into batches of transformed image tensors, one epoch at a
/// time. A background thread prepares upcoming batches (a bounded queue of
/// <see cref="BatchLoaderOptions.PrefetchBatches"/>) into plain arrays while the consumer trains on
/// the current one; tensors are only created on the consumer's thread because TorchSharp dispose
/// scopes are per thread. Images that must be decoded from files are prepared in parallel, each
/// with a random stream of its own derived from the seed, the epoch and its position, so the
/// batches do not depend on the number of threads or their timing. Everything random derives from
/// <c>Seed + epoch</c>, so an epoch repeats exactly.
/// </summary>
public sealed class BatchLoader
{
    private readonly ImageDataset _images;
    private readonly IImageTransform _transform;
    private readonly BatchLoaderOptions _options;

    // Full-size image buffers are recycled because each is large enough to land on the large
    // object heap; torch.tensor copies the data, so a buffer is free again once wrapped.
    private readonly ConcurrentQueue<float[]> _freeBuffers = new();

    /// <summary>Creates a loader; nothing runs until an epoch is enumerated.</summary>
    public BatchLoader(ImageDataset images, IImageTransform transform, BatchLoaderOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(transform);
        options ??= new BatchLoaderOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.BatchSize, nameof(options.BatchSize));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.PrefetchBatches, nameof(options.PrefetchBatches));
        _images = images;
        _transform = transform;
        _options = options;
    }

    /// <summary>Images in the underlying set (including any a dropped last batch skips).</summary>
    public int ImageCount => _images.Count;

    /// <summary>Images per full batch.</summary>
    public int BatchSize => _options.BatchSize;

    /// <summary>Batches one epoch yields.</summary>
    public int BatchesPerEpoch => _options.DropLast
        ? ImageCount / BatchSize
        : (ImageCount + BatchSize - 1) / BatchSize;

    /// <summary>Side length T of the square images in each batch.</summary>
    public int ImageSize => _transform.TargetSize;

    /// <summary>Threads that prepare the images of a batch read from files.</summary>
    public int Workers => _images.PreparesInParallel ? _options.Workers : 1;

    /// <summary>Channels C of the images in each batch.</summary>
    public int Channels => _transform.Channels;

    /// <summary>The images batches are cut from.</summary>
    public ImageDataset Images => _images;

    // Runs on the producer thread before each batch is prepared; lets tests inject failures.
    internal Action<int>? BeforeBatchPrepared { get; init; }

    /// <summary>
    /// Enumerates the batches of epoch <paramref name="epoch"/>. The background thread starts on the
    /// first MoveNext and stops when the enumeration ends or its enumerator is disposed (for example
    /// by leaving a foreach early). An exception thrown while preparing a batch is rethrown from
    /// MoveNext after the batches prepared before it.
    /// </summary>
    public IEnumerable<Batch> Epoch(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        return EnumerateEpoch(epoch);
    }

    private IEnumerable<Batch> EnumerateEpoch(int epoch)
    {
        using var prefetcher = new Prefetcher(this, epoch);
        while (prefetcher.TryTake(out var prepared))
        {
            var batch = ToBatch(prepared);
            yield return batch;
        }
    }

    private Batch ToBatch(PreparedBatch prepared)
    {
        var count = prepared.Labels.Length;
        var size = ImageSize;
        var images = torch.tensor(prepared.Images, [count, Channels, size, size]);
        var labels = torch.tensor(prepared.Labels, [count]);
        if (prepared.Images.Length == BatchSize * _transform.OutputLength)
        {
            _freeBuffers.Enqueue(prepared.Images);
        }

        return _options.Device is { } device ? Batch.MoveTo(images, labels, device) : new Batch(images, labels);
    }

    private int[] EpochOrder(Random random)
    {
        var order = Enumerable.Range(0, ImageCount).ToArray();
        if (_options.Shuffle)
        {
            random.Shuffle(order);
        }

        return order;
    }

    private PreparedBatch Prepare(int[] indices, Random random, int epoch, int start)
    {
        var length = _transform.OutputLength;
        var images = indices.Length == BatchSize && _freeBuffers.TryDequeue(out var free)
            ? free
            : new float[indices.Length * length];
        var labels = new long[indices.Length];
        if (!_images.PreparesInParallel)
        {
            for (var i = 0; i < indices.Length; i++)
            {
                var index = indices[i];
                _transform.Apply(_images.GetPixels(index).ToChannels(Channels), random, images.AsSpan(i * length, length));
                labels[i] = _images.LabelOf(index);
            }

            return new PreparedBatch(images, labels);
        }

        try
        {
            Parallel.For(0, indices.Length, new ParallelOptions { MaxDegreeOfParallelism = _options.Workers }, i =>
            {
                var index = indices[i];
                var own = new Random(SampleSeed(_options.Seed, epoch, start + i));
                _transform.Apply(_images.GetPixels(index).ToChannels(Channels), own, images.AsSpan(i * length, length));
                labels[i] = _images.LabelOf(index);
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }

        return new PreparedBatch(images, labels);
    }

    // A seed for the image at `position` of `epoch`'s order (SplitMix64 finaliser over the three
    // values): independent streams that do not depend on which thread prepares the image.
    internal static int SampleSeed(int seed, int epoch, int position)
    {
        var z = unchecked(((ulong)(uint)seed << 32) ^ ((ulong)(uint)epoch << 20) ^ (ulong)(uint)position);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return unchecked((int)(z ^ (z >> 31)));
    }

    private sealed record PreparedBatch(float[] Images, long[] Labels);

    /// <summary>The background thread of one epoch and the bounded queue it fills.</summary>
    private sealed class Prefetcher : IDisposable
    {
        private readonly BatchLoader _loader;
        private readonly int _epoch;
        private readonly BlockingCollection<PreparedBatch> _queue;
        private readonly CancellationTokenSource _stop = new();
        private readonly Thread _thread;
        private ExceptionDispatchInfo? _failure;

        public Prefetcher(BatchLoader loader, int epoch)
        {
            _loader = loader;
            _epoch = epoch;
            _queue = new BlockingCollection<PreparedBatch>(loader._options.PrefetchBatches);
            _thread = new Thread(Produce) { IsBackground = true, Name = $"updp batch prep (epoch {epoch})" };
            _thread.Start();
        }

        public bool TryTake(out PreparedBatch prepared)
        {
            if (_queue.TryTake(out prepared!, Timeout.Infinite))
            {
                return true;
            }

            // The queue only completes after Produce has recorded any failure.
            _failure?.Throw();
            return false;
        }

        public void Dispose()
        {
            _stop.Cancel();
            _thread.Join();
            _queue.Dispose();
            _stop.Dispose();
        }

        private void Produce()
        {
            try
            {
                var options = _loader._options;
                var orderRandom = new Random(unchecked(options.Seed + _epoch));
                var order = _loader.EpochOrder(orderRandom);

                // A separate stream keeps the visiting order independent of how many random
                // numbers the transform draws.
                var augmentRandom = new Random(orderRandom.Next());
                for (var batch = 0; batch < _loader.BatchesPerEpoch; batch++)
                {
                    _stop.Token.ThrowIfCancellationRequested();
                    _loader.BeforeBatchPrepared?.Invoke(batch);
                    var start = batch * options.BatchSize;
                    var indices = order.AsSpan(start, Math.Min(options.BatchSize, order.Length - start)).ToArray();
                    _queue.Add(_loader.Prepare(indices, augmentRandom, _epoch, start), _stop.Token);
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                // The consumer stopped early; nobody is waiting for more batches.
            }
            catch (Exception e)
            {
                _failure = ExceptionDispatchInfo.Capture(e);
            }
            finally
            {
                _queue.CompleteAdding();
            }
        }
    }
}
