using TorchSharp;
using Updp.Models;
using static TorchSharp.torch;

namespace Updp.Tests.Models;

public class TensorArithmeticTests
{
    private static Tensor Random(params long[] shape)
    {
        var generator = new Generator(7);
        return randn(shape, generator: generator);
    }

    [Fact]
    public void Each_helper_computes_exactly_what_the_operator_computes()
    {
        using var scope = NewDisposeScope();
        var a = Random(3, 5, 7);
        var b = Random(3, 5, 7).flip(0);
        Assert.True(Same(a.Plus(b), a + b));
        Assert.True(Same(a.Plus(1e-5), a + 1e-5));
        Assert.True(Same(a.Times(0.3), a * 0.3));
        Assert.True(Same(a.DividedBy(0.9), a / 0.9));
        // And against an independent computation, so that the two cannot agree by sharing a bug.
        float[] x = a.data<float>().ToArray(), y = b.data<float>().ToArray(), sum = a.Plus(b).data<float>().ToArray();
        Assert.Equal(x.Zip(y, (p, q) => p + q), sum);
        var index = tensor(new long[] { 2, 0, 2 });
        var source = Random(4, 3);
        var expected = zeros(4, 3);
        expected.index_add_(1, index, source, 1.0);
        Assert.True(Same(zeros(4, 3).IndexAddInPlace(1, index, source), expected));
        Assert.Equal(source[.., 0].Plus(source[.., 2]).data<float>().ToArray(), expected[.., 2].data<float>().ToArray());
    }

    /// <summary>
    /// Garbage collections on another thread all through the calls, as the loader's workers cause
    /// them during training: every scalar the helpers pass must outlive its call. Large operands
    /// widen the window between libtorch's reads of the scalar. With TorchSharp's own <c>a + b</c> in
    /// place of <c>a.Plus(b)</c> this test failed in 2 of 3 runs ("Expected false to be true", the
    /// error that stopped a demo run; docs/RELIABILITY.md), with the helper in none.
    /// </summary>
    [Fact]
    public void Scalars_outlive_their_calls_while_another_thread_collects()
    {
        using var a = Random(Side, Side);
        using var b = Random(Side, Side).flip(0);
        using var expected = a + b;
        using var stop = new CancellationTokenSource();
        var collector = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        });
        collector.Start();
        try
        {
            for (var i = 0; i < Iterations; i++)
            {
                using var scope = NewDisposeScope();
                var sum = a.Plus(b);
                Assert.True(Same(sum, expected), $"iteration {i}: a wrong sum");
            }
        }
        finally
        {
            stop.Cancel();
            collector.Join();
        }
    }

    private static bool Same(Tensor x, Tensor y) => x.shape.SequenceEqual(y.shape) && x.eq(y).all().item<bool>();

    private const int Side = 2048;

    private const int Iterations = 600;
}
