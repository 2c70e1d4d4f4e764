using System.Text.Json;
using Updp.Checkpoints;
using Updp.Data;
using static TorchSharp.torch;

namespace Updp.Tests.Data;

/// <summary>
/// Our resize-crop transforms and decoding against what torchvision 0.14 and Pillow 9.4 computed on
/// the same PNG files (tools/make_transform_fixture.py): timm's evaluation transform, resized crops
/// with flips, and the decode + RGB/L conversion.
/// </summary>
public class TorchvisionTransformTests
{
    // The issue's bound: one level of 8-bit pixel after normalisation.
    private const float Tolerance = 1f / 255;

    private static readonly string Directory = Path.Combine(AppContext.BaseDirectory, "Fixtures", "transforms");
    private static readonly Lazy<Dictionary<string, Tensor>> Expected = new(() => StateDict.Read(Path.Combine(Directory, "transforms.safetensors")));
    private static readonly Lazy<JsonElement[]> Cases = new(() =>
        [.. JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "transforms.json"))).RootElement.GetProperty("cases").EnumerateArray()]);

    public static TheoryData<string> CaseNames(string op)
    {
        var data = new TheoryData<string>();
        foreach (var c in JsonDocument.Parse(File.ReadAllText(Path.Combine(Directory, "transforms.json"))).RootElement.GetProperty("cases").EnumerateArray())
        {
            if (c.GetProperty("op").GetString() == op)
            {
                data.Add(c.GetProperty("name").GetString()!);
            }
        }
        return data;
    }

    public static TheoryData<string> EvalCases => CaseNames("eval");

    public static TheoryData<string> CropCases => CaseNames("resized_crop");

    public static TheoryData<string> DecodeCases => CaseNames("decode");

    [Theory]
    [MemberData(nameof(EvalCases))]
    public void EvaluationTransformMatchesTimm(string name)
    {
        var c = Case(name);
        var transform = ResizeCropTransform.ForEvaluation(c.GetProperty("size").GetInt32(), Normalization(c), Interp(c), c.GetProperty("crop_pct").GetDouble());
        var (w, h) = ResizeCropTransform.ShorterSideTo(Source(c).Width, Source(c).Height, transform.ResizeSize);
        Assert.Equal((c.GetProperty("resized_w").GetInt32(), c.GetProperty("resized_h").GetInt32()), (w, h));

        AssertClose(name, Run(transform, Source(c)));
    }

    [Theory]
    [MemberData(nameof(CropCases))]
    public void ResizedCropMatchesTorchvision(string name)
    {
        var c = Case(name);
        var source = Source(c);
        var size = c.GetProperty("size").GetInt32();
        var pixels = Resampling.ResizeCrop(source, c.GetProperty("top").GetInt32(), c.GetProperty("left").GetInt32(),
            c.GetProperty("height").GetInt32(), c.GetProperty("width").GetInt32(), size, size, Interp(c));
        if (c.GetProperty("flip").GetBoolean())
        {
            pixels = Flip(pixels, size, size, source.Channels);
        }

        // The evaluation transform of an image already T×T only normalises (no resize, offset 0).
        var normalise = ResizeCropTransform.ForEvaluation(size, Normalization(c), Interp(c), cropPct: 1.0);
        AssertClose(name, Run(normalise, new PixelImage(pixels, size, size, source.Channels)));
    }

    [Theory]
    [MemberData(nameof(DecodeCases))]
    public void DecodingAndConversionMatchPil(string name)
    {
        var c = Case(name);
        var image = c.GetProperty("image").GetString()!;
        if (image.StartsWith("i16", StringComparison.Ordinal))
        {
            // PIL clamps 16-bit values to 0..255 when converting; decoders scale them to 8 bits
            // instead, which keeps the image. Not a difference worth copying.
            return;
        }
        var channels = c.GetProperty("convert").GetString() == "L" ? 1 : 3;
        var decoded = ImageReader.Default.Read(Path.Combine(Directory, image), channels);
        using var expected = Expected.Value[name].to_type(ScalarType.Float32);
        var want = expected.data<float>().ToArray();
        Assert.Equal(want.Length, decoded.Pixels.Length);
        var got = decoded.Pixels.ToArray();
        var worst = Enumerable.Range(0, want.Length).Max(i => Math.Abs(want[i] - got[i]));
        Assert.True(worst == 0, $"{name}: decoded pixels differ from PIL's by up to {worst} levels");
    }

    [Fact]
    public void TheFixtureCoversBothFiltersCropPctsAndFlips()
    {
        var cases = Cases.Value;
        Assert.Contains(cases, c => c.GetProperty("op").GetString() == "eval" && c.GetProperty("interpolation").GetString() == "bilinear");
        Assert.Contains(cases, c => c.GetProperty("op").GetString() == "eval" && c.GetProperty("crop_pct").GetDouble() == 1.0);
        Assert.Contains(cases, c => c.GetProperty("op").GetString() == "resized_crop" && c.GetProperty("flip").GetBoolean());
        Assert.Contains(cases, c => c.GetProperty("op").GetString() == "eval" && c.GetProperty("size").GetInt32() == 224);
    }

    private static JsonElement Case(string name) => Cases.Value.Single(c => c.GetProperty("name").GetString() == name);

    private static Interpolation Interp(JsonElement c) => Resampling.Parse(c.GetProperty("interpolation").GetString()!);

    private static ChannelNormalization Normalization(JsonElement c) =>
        new([.. c.GetProperty("mean").EnumerateArray().Select(v => v.GetSingle())], [.. c.GetProperty("std").EnumerateArray().Select(v => v.GetSingle())]);

    // The image as PIL converted it: from the fixture's decode tensor when there is one, so that
    // these tests check the transform alone; otherwise decoded here (plain 8-bit PNGs decode exactly).
    private static PixelImage Source(JsonElement c)
    {
        var image = c.GetProperty("image").GetString()!;
        var channels = c.GetProperty("convert").GetString() == "L" ? 1 : 3;
        var decodeName = $"{Path.GetFileNameWithoutExtension(image)}/{(channels == 1 ? "l" : "rgb")}";
        if (Expected.Value.TryGetValue(decodeName, out var decoded))
        {
            var bytes = decoded.data<float>().ToArray().Select(v => (byte)v).ToArray();
            return new PixelImage(bytes, (int)decoded.shape[0], (int)decoded.shape[1], channels);
        }
        return ImageReader.Default.Read(Path.Combine(Directory, image), channels);
    }

    private static float[] Run(IImageTransform transform, PixelImage image)
    {
        var output = new float[transform.OutputLength];
        transform.Apply(image, new Random(0), output);
        return output;
    }

    private static byte[] Flip(byte[] pixels, int height, int width, int channels)
    {
        var flipped = new byte[pixels.Length];
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                for (var ch = 0; ch < channels; ch++)
                {
                    flipped[(((y * width) + (width - 1 - x)) * channels) + ch] = pixels[(((y * width) + x) * channels) + ch];
                }
            }
        }
        return flipped;
    }

    private static void AssertClose(string name, float[] actual)
    {
        var want = Expected.Value[name].data<float>().ToArray();
        Assert.Equal(want.Length, actual.Length);
        var worst = Enumerable.Range(0, want.Length).Max(i => Math.Abs(want[i] - actual[i]));
        Assert.True(worst <= Tolerance, $"{name}: max |Δ| {worst} after normalisation exceeds 1/255");
    }
}
