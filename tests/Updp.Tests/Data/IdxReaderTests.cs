using Updp.Data;

namespace Updp.Tests.Data;

public sealed class IdxReaderTests : IDisposable
{
    // Two 2x3 images; header written out by hand: magic 0x00000803, then 2, 2, 3 as big-endian u32.
    private static readonly byte[] TwoImages =
    [
        0x00, 0x00, 0x08, 0x03,
        0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x03,
        1, 2, 3,
        4, 5, 6,
        250, 251, 252,
        253, 254, 255,
    ];

    // Magic 0x00000801, count 3, then three labels.
    private static readonly byte[] ThreeLabels = [0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x03, 9, 0, 4];

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(false, "images-idx3-ubyte")]
    [InlineData(true, "images-idx3-ubyte.gz")]
    // Gzip is recognised by content, so a misleading extension either way still reads.
    [InlineData(true, "images-idx3-ubyte")]
    [InlineData(false, "images-idx3-ubyte.gz")]
    public void ReadsImagesExactly(bool gzip, string name)
    {
        var path = gzip ? _dir.WriteGzip(name, TwoImages) : _dir.Write(name, TwoImages);

        var images = IdxReader.ReadImages(path);

        Assert.Equal(2, images.Count);
        Assert.Equal(2, images.Rows);
        Assert.Equal(3, images.Cols);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 250, 251, 252, 253, 254, 255 }, images.Pixels);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReadsLabelsExactly(bool gzip)
    {
        var path = gzip ? _dir.WriteGzip("labels.gz", ThreeLabels) : _dir.Write("labels", ThreeLabels);

        Assert.Equal(new byte[] { 9, 0, 4 }, IdxReader.ReadLabels(path));
    }

    [Fact]
    public void EmptyFileIsATruncatedHeader()
    {
        var path = _dir.Write("empty-idx3-ubyte", []);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(path));

        Assert.Contains("empty-idx3-ubyte", e.Message);
        // Refused before it is opened: a named pipe reports length 0 too, and opening one would block.
        Assert.Contains("is empty or not a regular file", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TruncatedHeaderNamesFileAndLengths(bool gzip)
    {
        var bytes = TwoImages[..10];
        var path = gzip ? _dir.WriteGzip("short-header.gz", bytes) : _dir.Write("short-header", bytes);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("expected a 16-byte header, got 10 bytes", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TruncatedPixelsNameFileAndByteCounts(bool gzip)
    {
        var bytes = TwoImages[..^5];
        var path = gzip ? _dir.WriteGzip("short-pixels.gz", bytes) : _dir.Write("short-pixels", bytes);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("expected 12 bytes of pixel data after the header, got 7", e.Message);
    }

    [Fact]
    public void TruncatedLabelsNameFileAndByteCounts()
    {
        var path = _dir.Write("short-labels", ThreeLabels[..^1]);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadLabels(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("expected 3 bytes of label data after the header, got 2", e.Message);
    }

    [Fact]
    public void CutOffGzipStreamIsReportedWithFileName()
    {
        var whole = _dir.WriteGzip("whole.gz", IdxBytes.Images(50, 28, 28));
        var bytes = File.ReadAllBytes(whole);
        var path = _dir.Write("cut.gz", bytes[..(bytes.Length / 2)]);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(path));

        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void TrailingDataIsRejected()
    {
        var path = _dir.Write("long-labels", [.. ThreeLabels, 7]);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadLabels(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("data after the 3 bytes", e.Message);
    }

    [Fact]
    public void LabelFileReadAsImagesReportsFoundAndExpectedMagic()
    {
        var path = _dir.Write("train-labels-idx1-ubyte", ThreeLabels);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("wrong magic number 0x00000801, expected 0x00000803", e.Message);
        Assert.Contains("looks like a labels file", e.Message);
    }

    [Fact]
    public void ArbitraryMagicIsRejectedForLabels()
    {
        var bytes = (byte[])ThreeLabels.Clone();
        bytes[2] = 0x0D; // float element type
        var path = _dir.WriteGzip("floats.gz", bytes);

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadLabels(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("wrong magic number 0x00000D01, expected 0x00000801", e.Message);
    }

    [Fact]
    public void ZeroSizedImagesAreRejected()
    {
        var path = _dir.Write("flat", IdxBytes.Images(3, 0, 28));

        var e = Assert.Throws<InvalidDataException>(() => IdxReader.ReadImages(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("0x28", e.Message);
    }

    [Fact]
    public void MissingFileNamesPathAndExpectedKind()
    {
        var path = Path.Combine(_dir.Path, "t10k-labels-idx1-ubyte.gz");

        var e = Assert.Throws<FileNotFoundException>(() => IdxReader.ReadLabels(path));

        Assert.Equal(path, e.FileName);
        Assert.Contains(path, e.Message);
        Assert.Contains("labels", e.Message);
    }
}
