using TorchSharp;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Tests.Pruning;

/// <summary>ResNet's merge algebra, each function against running the layers it replaces.</summary>
public class ConvMergeMathTests
{
    private static Tensor Pad(Tensor x, int p) => nn.functional.pad(x, [p, p, p, p]);

    [Theory]
    [InlineData(3, 1, 3, 1, 8)]  // BasicBlock, stride 1: a 5×5 kernel
    [InlineData(3, 2, 3, 1, 8)]  // BasicBlock, stride 2: a 7×7 stride-2 kernel
    [InlineData(3, 2, 3, 1, 9)]  // the same on an odd map
    [InlineData(1, 1, 3, 2, 7)]  // Bottleneck conv1 ∘ conv2 (stride on the second)
    [InlineData(3, 2, 1, 1, 9)]  // Bottleneck (conv1∘conv2) ∘ conv3
    public void ComposedConvComputesTheTwoConvsInSequence(int k1, int s1, int k2, int s2, int side)
    {
        using var scope = NewDisposeScope();
        var g = new Generator((ulong)(k1 * 100 + s1 * 10 + k2 + side));
        var x = randn([2, 3, side, side], float64, generator: g);
        var (w1, b1) = (randn([5, 3, k1, k1], float64, generator: g), randn([5], float64, generator: g));
        var (w2, b2) = (randn([4, 5, k2, k2], float64, generator: g), randn([4], float64, generator: g));
        var p1 = (k1 - 1) / 2;
        var p2 = (k2 - 1) / 2;
        var moved = ConvMergeMath.MovedPadding(p1, s1, p2);

        // The padding moved to the input: conv₁ then conv₂, neither padding.
        var sequential = nn.functional.conv2d(nn.functional.conv2d(Pad(x, moved), w1, b1, strides: [s1, s1]), w2, b2, strides: [s2, s2]);
        var (w, b) = ConvMergeMath.ComposeConv(w1, b1, s1, w2, b2);
        var composed = nn.functional.conv2d(x, w, b, strides: [s1 * s2, s1 * s2], padding: [moved, moved]);

        Assert.Equal([4L, 3, k1 + ((k2 - 1) * s1), k1 + ((k2 - 1) * s1)], w.shape);
        Assert.Equal(sequential.shape, composed.shape);
        Assert.True(composed.allclose(sequential, rtol: 1e-10, atol: 1e-10));
    }

    [Fact]
    public void MovedPaddingKeepsTheInteriorAndChangesOnlyTheBorder()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        var x = randn([1, 2, 8, 8], float64, generator: g);
        var (w1, b1) = (randn([3, 2, 3, 3], float64, generator: g), randn([3], float64, generator: g));
        var w2 = randn([2, 3, 3, 3], float64, generator: g);

        // The original block's padding: conv₁ (stride 2, padding 1), conv₂ (padding 1).
        var original = nn.functional.conv2d(nn.functional.conv2d(x, w1, b1, strides: [2, 2], padding: [1, 1]), w2, padding: [1, 1]);
        var moved = ConvMergeMath.MovedPadding(1, 2, 1);
        var movedForm = nn.functional.conv2d(nn.functional.conv2d(Pad(x, moved), w1, b1, strides: [2, 2]), w2);

        Assert.Equal(3, moved);
        Assert.Equal(original.shape, movedForm.shape);
        // Outputs whose 3×3 window stays inside conv₁'s map agree; on the border conv₂ read
        // padding zeros in the original and conv₁'s values (bias included) in the moved form.
        Assert.True(original[.., .., 1..^1, 1..^1].allclose(movedForm[.., .., 1..^1, 1..^1], rtol: 1e-10, atol: 1e-10));
        Assert.True((original - movedForm).abs().max().item<double>() > 1e-3);
    }

    [Theory]
    [InlineData(5, 1, false)] // stride-1 BasicBlock, identity shortcut
    [InlineData(7, 2, true)]  // stride-2 BasicBlock, 1×1 stride-2 projection
    [InlineData(3, 1, true)]  // resnet50's layer1.0: 1×1 stride-1 projection
    [InlineData(3, 2, true)]  // strided bottleneck
    public void ShortcutInTheCentreTapAddsTheShortcut(int k, int stride, bool projection)
    {
        using var scope = NewDisposeScope();
        var g = new Generator((ulong)(k + stride));
        const int inC = 4;
        var outC = projection ? 6 : inC;
        var x = randn([2, inC, 9, 9], float64, generator: g);
        var w = randn([outC, inC, k, k], float64, generator: g);
        var shortcut = projection ? randn([outC, inC], float64, generator: g) : eye(inC, dtype: float64);

        var p = (k - 1) / 2;
        var expected = nn.functional.conv2d(x, w, strides: [stride, stride], padding: [p, p])
            + nn.functional.conv2d(x, shortcut.view(outC, inC, 1, 1), strides: [stride, stride]);
        var actual = nn.functional.conv2d(x, ConvMergeMath.AddToCentre(w, shortcut), strides: [stride, stride], padding: [p, p]);

        Assert.True(actual.allclose(expected, rtol: 1e-10, atol: 1e-10));
    }

    [Fact]
    public void AddToCentreLeavesItsInputAloneAndChecksShapes()
    {
        using var scope = NewDisposeScope();
        var w = zeros(2, 2, 3, 3, float64);
        var merged = ConvMergeMath.AddToCentre(w, eye(2, dtype: float64));
        Assert.Equal(0, w.abs().sum().item<double>());
        Assert.Equal(2, merged.sum().item<double>());
        Assert.Equal(1, merged[1, 1, 1, 1].item<double>());
        Assert.Throws<ArgumentException>(() => ConvMergeMath.AddToCentre(zeros(2, 2, 4, 4, float64), eye(2, dtype: float64)));
        Assert.Throws<ArgumentException>(() => ConvMergeMath.AddToCentre(w, eye(3, dtype: float64)));
    }
}
