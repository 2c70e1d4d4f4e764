using System.Text.Json;
using Updp.Tests.Data;

namespace Updp.Tests.Cli;

/// <summary>Every verb on an image-folder data set of JPEG, PNG, WebP and BMP files of assorted sizes.</summary>
public partial class CliTests
{
    [Fact]
    public void TrainPruneEvalPredictAndExportRunOnAnImageFolder()
    {
        using var dir = new TempDir();
        var data = dir.File("shapes");
        ImageFolderFixture.WriteSplit(data, "train", classes: 3, perClass: 24, seed: 1);
        ImageFolderFixture.WriteSplit(data, "test", classes: 3, perClass: 6, seed: 2);
        var run = dir.File("run");

        var (code, stdout, err) = Run("train", "--model", "convnext_atto", "--data", data, "--input-size", "32", "--epochs", "2", "--batch-size", "16",
            "--lr", "0.004", "--out", run, "--cache", dir.File("cache"), "--scale", "0.5,1");
        Assert.True(code == 0, err);
        using (var metrics = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json"))))
        {
            Assert.Equal("test", metrics.RootElement.GetProperty("test_split").GetString());
        }
        using (var sidecar = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "model.json"))))
        {
            Assert.Equal(["class_0", "class_1", "class_2"], sidecar.RootElement.GetProperty("classes").EnumerateArray().Select(c => c.GetString()));
            var p = sidecar.RootElement.GetProperty("preprocessing");
            Assert.Equal("resize_crop", p.GetProperty("transform").GetString());
            Assert.Equal(3, p.GetProperty("channels").GetInt32());
            Assert.Equal(0.5, p.GetProperty("scale")[0].GetDouble());
        }
        var model = Path.Combine(run, "model.safetensors");

        (code, stdout, err) = Run("eval", "--checkpoint", model, "--data", data, "--json");
        Assert.True(code == 0, err);
        using (var eval = JsonDocument.Parse(stdout))
        {
            Assert.Equal(18, eval.RootElement.GetProperty("images").GetInt32());
            var confusion = eval.RootElement.GetProperty("confusion").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
            Assert.Equal(18, confusion.Sum(r => r.Sum()));
            var correct = Enumerable.Range(0, 3).Sum(i => confusion[i][i]);
            Assert.Equal(eval.RootElement.GetProperty("top1").GetDouble(), correct / 18.0, 6);
            Assert.True(correct >= 12, $"only {correct} of 18 test images right after training on 3 easy classes");
        }

        var image = Directory.GetFiles(Path.Combine(data, "test", "class_1")).First();
        (code, stdout, err) = Run("predict", "--checkpoint", model, "--images", image);
        Assert.True(code == 0, err);
        Assert.Contains("class_", stdout);

        var pruned = dir.File("pruned");
        (code, stdout, err) = Run("prune", "--checkpoint", model, "--data", data, "--blocks", "2", "--supernet-epochs", "1", "--finetune-epochs", "1",
            "--max-steps", "2", "--batch-size", "16", "--calibration-batches", "1", "--search-val-limit", "8", "--search-population", "2",
            "--search-generations", "1", "--out", pruned, "--cache", dir.File("cache"));
        Assert.True(code == 0, err);
        Assert.True(File.Exists(Path.Combine(pruned, "model.onnx")));

        (code, stdout, err) = Run("export", "--checkpoint", Path.Combine(pruned, "merged.safetensors"), "--data", data, "--onnx", dir.File("m.onnx"),
            "--check-images", "8");
        Assert.True(code == 0, err);
        Assert.Contains("8 test images", stdout);
    }

    [Fact]
    public void BadImagesStopTheRunNamingTheFileOrAreSkippedAndCounted()
    {
        using var dir = new TempDir();
        var data = dir.File("shapes");
        ImageFolderFixture.WriteSplit(data, "train", classes: 2, perClass: 6, seed: 1);
        var broken = Path.Combine(data, "train", "class_0", "broken.png");
        File.WriteAllText(broken, "not a png");
        var args = new[] { "train", "--model", "convnext_atto", "--data", data, "--input-size", "32", "--epochs", "1", "--batch-size", "4",
            "--max-steps", "1", "--out", dir.File("run") };

        var (code, _, err) = Run(args);
        Assert.Equal(2, code);
        Assert.Contains("broken.png", err);
        Assert.Single(err.Trim().Split('\n'));
        Assert.False(Directory.Exists(dir.File("run")) && Directory.EnumerateFiles(dir.File("run")).Any());

        (code, var stdout, err) = Run([.. args, "--skip-bad-images"]);
        Assert.True(code == 0, err);
        Assert.Contains("skipped 1 bad image", stdout);
    }

    [Fact]
    public void ABatchLargerThanTheTrainingSetIsRefusedBeforeTraining()
    {
        using var dir = new TempDir();
        var data = dir.File("shapes");
        ImageFolderFixture.WriteSplit(data, "train", classes: 2, perClass: 5, seed: 1);

        var (code, _, err) = Run("train", "--model", "convnext_atto", "--data", data, "--input-size", "32", "--epochs", "1", "--out", dir.File("run"));

        Assert.Equal(2, code);
        Assert.Contains("--batch-size 64", err);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Theory]
    [InlineData("--input-size", "100000", "--input-size")]
    [InlineData("--mean", "0.5,0.4", "--mean")]
    [InlineData("--crop-pct", "0.01", "--crop-pct")]
    public void BadPreprocessingValuesAreRefusedNamingTheOption(string option, string value, string named)
    {
        using var dir = new TempDir();
        var data = dir.File("shapes");
        ImageFolderFixture.WriteSplit(data, "train", classes: 2, perClass: 4, seed: 1);

        var (code, _, err) = Run("train", "--model", "convnext_atto", "--data", data, "--epochs", "1", "--batch-size", "2", option, value, "--out", dir.File("run"));

        Assert.Equal(2, code);
        Assert.Contains(named, err);
    }

    [Fact]
    public void PretrainedWeightsFineTuneAtTheirOwnLearningRateUnlessOneIsGiven()
    {
        using var dir = new TempDir();
        var data = dir.File("shapes");
        ImageFolderFixture.WriteSplit(data, "train", classes: 2, perClass: 6, seed: 1);
        // A bare 1000-class RGB state dict in timm's names, as timm saves an ImageNet convnext_atto.
        var weights = dir.File("convnext_atto_in1k.safetensors");
        using (var source = Updp.Models.ModelRegistry.Create("convnext_atto", numClasses: 1000, inChans: 3))
        using (var stream = File.Create(weights))
        {
            Updp.Checkpoints.Safetensors.Write(stream, source.state_dict(), metadata: null);
        }
        string[] args = ["train", "--model", "convnext_atto", "--data", data, "--input-size", "32", "--epochs", "1", "--batch-size", "4",
            "--max-steps", "1", "--pretrained", weights];

        var (code, stdout, err) = Run([.. args, "--out", dir.File("default")]);
        Assert.True(code == 0, err);
        Assert.Contains("lr 0.0005,", stdout);
        Assert.Contains("1000 classes", stdout);

        (code, stdout, err) = Run([.. args, "--lr", "0.002", "--out", dir.File("given")]);
        Assert.True(code == 0, err);
        Assert.Contains("lr 0.002,", stdout);
    }

    [Fact]
    public void AValidationSplitAsLargeAsTheTrainingSetIsRefusedNamingTheOption()
    {
        using var dir = new TempDir();
        var data = dir.File("shapes");
        ImageFolderFixture.WriteSplit(data, "train", classes: 2, perClass: 5, seed: 1);

        var (code, _, err) = Run("train", "--model", "convnext_atto", "--data", data, "--input-size", "32", "--epochs", "1", "--batch-size", "2",
            "--val-size", "10", "--out", dir.File("run"));

        Assert.Equal(2, code);
        Assert.Contains("--val-size 10: cannot carve 10 validation images from a training set of 10", err);
        Assert.Single(err.Trim().Split('\n'));
    }
}
