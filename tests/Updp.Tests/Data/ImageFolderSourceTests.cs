using Updp.Data;

namespace Updp.Tests.Data;

public class ImageFolderSourceTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void TrainOnlyFolderGivesSortedClassesAStratifiedValidationSplitAndTestFromVal()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", classes: 3, perClass: 10, seed: 1);
        Directory.CreateDirectory(_dir.File("train/.hidden"));

        var source = DatasetCatalog.Resolve(_dir.Path);
        var splits = source.LoadSplits(6, seed: 4);

        Assert.IsType<ImageFolderSource>(source);
        Assert.Equal(["class_0", "class_1", "class_2"], splits.Train.ClassNames);
        Assert.Equal(24, splits.Train.Count);
        Assert.Equal([2, 2, 2], splits.Validation.CountPerClass());
        Assert.True(splits.TestIsValidation);
        Assert.Equal("val", splits.TestName);
        Assert.Same(splits.Validation, splits.Test);
        var again = source.LoadSplits(6, seed: 4);
        Assert.Equal(Paths(splits.Validation), Paths(again.Validation));
        Assert.NotEqual(Paths(splits.Validation), Paths(source.LoadSplits(6, seed: 5).Validation));
        Assert.Empty(Paths(splits.Validation).Intersect(Paths(splits.Train)));
    }

    [Fact]
    public void ValAndTestFoldersAreUsedWithTrainsClassIndices()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 3, 4, seed: 1);
        ImageFolderFixture.WriteSplit(_dir.Path, "val", 2, 2, seed: 2);
        ImageFolderFixture.WriteSplit(_dir.Path, "test", 3, 3, seed: 3);

        var splits = DatasetCatalog.Resolve(_dir.Path).LoadSplits(null, 0);

        Assert.Equal(12, splits.Train.Count);
        Assert.Equal(4, splits.Validation.Count);
        Assert.Equal([2, 2, 0], splits.Validation.CountPerClass());
        Assert.Equal(9, splits.Test.Count);
        Assert.False(splits.TestIsValidation);
    }

    [Fact]
    public void AClassInValThatTrainLacksIsAnErrorNamingTheFolder()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 2, 3, seed: 1);
        ImageFolderFixture.WriteSplit(_dir.Path, "val", 3, 1, seed: 2);

        var e = Assert.Throws<InvalidDataException>(() => DatasetCatalog.Resolve(_dir.Path).LoadSplits(null, 0));
        Assert.Contains("class_2", e.Message);
        Assert.Contains("no counterpart in train", e.Message);
    }

    [Fact]
    public void AnEmptyClassFolderIsAnErrorNamingIt()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 2, 3, seed: 1);
        Directory.CreateDirectory(_dir.File("train/empty_class"));
        File.WriteAllText(_dir.File("train/empty_class/notes.txt"), "not an image");

        var e = Assert.Throws<InvalidDataException>(() => DatasetCatalog.Resolve(_dir.Path).LoadSplits(null, 0));
        Assert.Contains("empty_class", e.Message);
        Assert.Contains("no image files", e.Message);
    }

    [Fact]
    public void ABrokenImageFailsTheLoadNamingItOrIsSkippedAndCounted()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 2, 6, seed: 1);
        var broken = _dir.File("train/class_1/broken.jpg");
        File.WriteAllText(broken, "this is not a JPEG");

        var e = Assert.Throws<BadImageException>(() => DatasetCatalog.Resolve(_dir.Path).LoadSplits(2, 0));
        Assert.Equal(broken, e.FilePath);
        Assert.Contains("broken.jpg", e.Message);

        var splits = DatasetCatalog.Resolve(_dir.Path).LoadSplits(2, 0, new DataLoadOptions { SkipBadImages = true });
        Assert.Single(splits.SkippedImages);
        Assert.Equal(broken, splits.SkippedImages[0].FilePath);
        Assert.Equal(12, splits.Train.Count + splits.Validation.Count);
    }

    [Fact]
    public void ATruncatedImageIsABadImageWhenDecoded()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 1, 1, seed: 1, minSide: 64, maxSide: 64);
        var png = Directory.GetFiles(_dir.File("train/class_0"), "*.png").Single();
        var bytes = File.ReadAllBytes(png);
        File.WriteAllBytes(png, bytes[..(bytes.Length / 2)]);

        var e = Assert.Throws<BadImageException>(() => ImageReader.Default.Read(png, 3));
        Assert.Equal(png, e.FilePath);
    }

    [Fact]
    public void AHugeHeaderIsRefusedBeforeDecodingAndATinyImageToo()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 2, 2, seed: 1);
        var bomb = _dir.Write("train/class_0/bomb.png", ImageFolderFixture.PngHeaderOnly(30_000, 30_000));
        var before = GC.GetTotalAllocatedBytes();

        var e = Assert.Throws<BadImageException>(() => DatasetCatalog.Resolve(_dir.Path).LoadSplits(1, 0));

        Assert.Equal(bomb, e.FilePath);
        Assert.Contains("30000x30000", e.Message);
        Assert.True(GC.GetTotalAllocatedBytes() - before < 100_000_000, "the refused image was allocated");
        File.Delete(bomb);
        var tiny = _dir.File("train/class_1/tiny.png");
        ImageFolderFixture.Write(tiny, "png", [1, 2, 3], 1, 1);
        var small = Assert.Throws<BadImageException>(() => DatasetCatalog.Resolve(_dir.Path).LoadSplits(1, 0));
        Assert.Equal(tiny, small.FilePath);
        Assert.Contains("too small", small.Message);
    }

    [Fact]
    public void SymlinksAreFollowedOnlyInsideTheirClassFolder()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 2, 3, seed: 1);
        ImageFolderFixture.WriteSplit(_dir.File("extra"), "more", 1, 2, seed: 2);
        File.CreateSymbolicLink(_dir.File("train/class_0/loop"), _dir.File("train/class_0"));
        Directory.CreateSymbolicLink(_dir.File("train/class_1/up"), _dir.File("train"));
        Directory.CreateSymbolicLink(_dir.File("train/class_1/inner"), _dir.File("train/class_1"));

        var splits = DatasetCatalog.Resolve(_dir.Path).LoadSplits(1, 0);

        // The self-links add nothing and the link up to train/ would label class_0's images class_1:
        // every image is listed once, under its own class.
        Assert.Equal(3, splits.Train.CountPerClass()[0] + splits.Validation.CountPerClass()[0]);
        Assert.Equal(3, splits.Train.CountPerClass()[1] + splits.Validation.CountPerClass()[1]);
    }

    [Fact]
    public void TwoClassFoldersThatAreOneFolderAreRefused()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 2, 3, seed: 1);
        Directory.CreateSymbolicLink(_dir.File("train/kitty"), _dir.File("train/class_0"));

        var e = Assert.Throws<InvalidDataException>(() => DatasetCatalog.Resolve(_dir.Path).LoadSplits(1, 0));
        Assert.Contains("kitty", e.Message);
    }

    [Fact]
    public async Task ANamedPipeIsRefusedWithoutBeingOpened()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 2, 3, seed: 1);
        var fifo = _dir.File("train/class_0/pipe.png");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo))
        {
            mkfifo.WaitForExit();
        }

        var load = Task.Run(() => DatasetCatalog.Resolve(_dir.Path).LoadSplits(1, 0));
        var finished = await Task.WhenAny(load, Task.Delay(TimeSpan.FromSeconds(20)));
        Assert.True(finished == load, "loading a folder with a named pipe hangs");
        var e = await Assert.ThrowsAsync<BadImageException>(() => load);
        Assert.Equal(fifo, e.FilePath);
    }

    [Fact]
    public void SkippingBadImagesDecodesToFindTruncatedOnes()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 2, 4, seed: 1, minSide: 64, maxSide: 64);
        var png = Directory.GetFiles(_dir.File("train/class_0"), "*.png").First();
        var bytes = File.ReadAllBytes(png);
        File.WriteAllBytes(png, bytes[..(bytes.Length / 2)]);

        var headersOnly = DatasetCatalog.Resolve(_dir.Path).LoadSplits(1, 0, new DataLoadOptions { SkipBadImages = true });
        var decoded = DatasetCatalog.Resolve(_dir.Path).LoadSplits(1, 0, new DataLoadOptions { SkipBadImages = true, DecodeToCheck = true });

        Assert.Empty(headersOnly.SkippedImages);
        Assert.Equal(png, Assert.Single(decoded.SkippedImages).FilePath);
        Assert.Equal(7, decoded.Train.Count + decoded.Validation.Count);
    }

    [Fact]
    public void ATruncatedImageFailsTheCacheBuildNamingIt()
    {
        ImageFolderFixture.WriteSplit(_dir.Path, "train", 2, 4, seed: 1, minSide: 64, maxSide: 64);
        var png = Directory.GetFiles(_dir.File("train/class_1"), "*.png").First();
        var bytes = File.ReadAllBytes(png);
        File.WriteAllBytes(png, bytes[..(bytes.Length / 2)]);
        var splits = DatasetCatalog.Resolve(_dir.Path).LoadSplits(1, 0);

        var e = Assert.Throws<BadImageException>(() => splits.WithCache(_dir.File("cache"), Preprocessing.ResizeCrop(32, 3)));
        Assert.Equal(png, e.FilePath);
        Assert.Empty(Directory.GetFiles(_dir.File("cache")));
        var skipped = splits.WithCache(_dir.File("cache"), Preprocessing.ResizeCrop(32, 3), skipBad: true);
        Assert.Equal(png, Assert.Single(skipped.SkippedImages).FilePath);
    }

    [Theory]
    [InlineData("a.png,-1\nb.png,0\n", "line 1")]
    [InlineData("a.png,0\nb.png,99999999999999999999\n", "line 2")]
    [InlineData("a.png,0\nb.png,cat\n", "line 2")]
    [InlineData("a.png,cat\nb.png,dog,extra\n", "line 2")]
    [InlineData("a.png,cat\na.png,dog\n", "lines 1 and 2")]
    public void CsvLabelsThatAreNeitherAllNamesNorAllClassIndicesAreRefused(string csv, string where)
    {
        ImageFolderFixture.Write(_dir.File("a.png"), "png", new byte[16 * 16 * 3], 16, 16);
        ImageFolderFixture.Write(_dir.File("b.png"), "png", new byte[16 * 16 * 3], 16, 16);
        var list = _dir.Write("list.csv", System.Text.Encoding.UTF8.GetBytes(csv));

        var e = Assert.Throws<InvalidDataException>(() => DatasetCatalog.Resolve(list).LoadSplits(1, 0));
        Assert.Contains(where, e.Message);
    }

    [Fact]
    public void ACsvListGivesPathsRelativeToItAndSortedLabelNames()
    {
        var files = ImageFolderFixture.WriteSplit(_dir.Path, "images", 2, 4, seed: 1);
        var lines = new List<string> { "path,label" };
        lines.AddRange(files.Select(f => $"{Path.GetRelativePath(_dir.Path, f)},{(f.Contains("class_0") ? "zebra" : "\"ant, red\"")}"));
        var list = _dir.Write("list.csv", System.Text.Encoding.UTF8.GetBytes(string.Join("\n", lines)));

        var splits = DatasetCatalog.Resolve(list).LoadSplits(2, 0);

        Assert.Equal(["ant, red", "zebra"], splits.Train.ClassNames);
        Assert.Equal(8, splits.Train.Count + splits.Validation.Count);
        var set = (ImageFileSet)splits.Train;
        Assert.All(Enumerable.Range(0, set.Count), i => Assert.Equal(set.PathOf(i).Contains("class_0") ? 1 : 0, set.LabelOf(i)));
    }

    [Fact]
    public void ACsvRowWithAMissingFileNamesTheLine()
    {
        var list = _dir.Write("list.csv", "a.png,cat\nmissing.png,dog\n"u8.ToArray());
        ImageFolderFixture.Write(_dir.File("a.png"), "png", new byte[16 * 16 * 3], 16, 16);

        var e = Assert.Throws<FileNotFoundException>(() => DatasetCatalog.Resolve(list).LoadSplits(1, 0));
        Assert.Contains("line 2", e.Message);
    }

    private static string[] Paths(ImageDataset set) => [.. ((ImageFileSet)set).Paths];
}
