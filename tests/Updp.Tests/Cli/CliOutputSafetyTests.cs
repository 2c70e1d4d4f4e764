using Updp.Training;

namespace Updp.Tests.Cli;

/// <summary>
/// Nothing the user did not ask to replace is replaced: existing outputs need --force, inputs are
/// never outputs, a run directory is used by one process at a time and resumed only with the
/// settings it was started with.
/// </summary>
public partial class CliTests
{
    private static string[] TinyTrain(string outDir) =>
        ["train", "--model", "convnext_atto", "--data", "fashion-mnist", "--input-size", "32", "--train-limit", "64", "--val-size", "16",
            "--max-steps", "1", "--epochs", "1", "--batch-size", "8", "--out", outDir];

    [Fact]
    public void AFinishedRunIsNotReplacedWithoutForceAndResumesOnlyWithItsOwnSettings()
    {
        using var dir = new TempDir();
        var run = dir.File("run");
        var (code, _, err) = Run(TinyTrain(run));
        Assert.True(code == 0, err);
        var model = File.ReadAllBytes(Path.Combine(run, "model.safetensors"));
        Assert.True(File.Exists(Path.Combine(run, "run.json")));

        (code, _, err) = Run(TinyTrain(run));
        Assert.Equal(2, code);
        Assert.Contains("holds a finished run", err);
        Assert.Equal(model, File.ReadAllBytes(Path.Combine(run, "model.safetensors")));

        // An interrupted run (no metrics.json yet) with a torn save left behind.
        File.Delete(Path.Combine(run, "metrics.json"));
        var torn = Path.Combine(run, ".last.safetensors.0123456789abcdef.tmp");
        File.WriteAllBytes(torn, [1, 2, 3]);
        (code, _, err) = Run(TinyTrain(run));
        Assert.Equal(2, code);
        Assert.Contains("interrupted run; give --resume", err);

        (code, _, err) = Run([.. TinyTrain(run), "--resume", "--seed", "1", "--lr", "0.001"]);
        Assert.Equal(2, code);
        Assert.Contains("seed: 0 → 1", err);
        Assert.Contains("lr: 0.002 → 0.001", err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.True(File.Exists(torn));

        (code, _, err) = Run([.. TinyTrain(run), "--resume"]);
        Assert.True(code == 0, err);
        Assert.False(File.Exists(torn));
        Assert.True(File.Exists(Path.Combine(run, "metrics.json")));

        (code, _, err) = Run([.. TinyTrain(run), "--force", "--seed", "2"]);
        Assert.True(code == 0, err);
        Assert.NotEqual(model, File.ReadAllBytes(Path.Combine(run, "model.safetensors")));
    }

    [Fact]
    public void ARunDirectoryInUseIsRefusedNamingTheProcessThatHoldsIt()
    {
        using var dir = new TempDir();
        var run = dir.File("run");
        using (RunLock.Acquire(run, "updp train"))
        {
            var (code, _, err) = Run(TinyTrain(run));
            Assert.Equal(2, code);
            Assert.Contains($"is in use by pid {Environment.ProcessId} (updp train)", err);
            Assert.False(File.Exists(Path.Combine(run, "model.safetensors")));
        }
        // Released: the next process takes it.
        using (RunLock.Acquire(run, "updp train"))
        {
            Assert.True(File.Exists(Path.Combine(run, ".lock.pid")));
        }
        Assert.False(File.Exists(Path.Combine(run, ".lock.pid")));
    }

    [Fact]
    public void APipeOrADeviceIsNeverReplacedAsAnOutputEvenWithForce()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var fifo = dir.File("out.json");
        MakeFifo(fifo);

        // --force renames a new file over the output: over /dev/null, as root, that replaces the device
        // (which a test must not risk; a pipe reports the same length 0 and is replaced the same way).
        var (code, stdout, err) = Run("predict", "--checkpoint", baseline, "--images", baseline, "--out", fifo, "--force");

        Assert.Equal(2, code);
        Assert.Equal($"error: --out '{fifo}' exists and is empty or not a regular file (a pipe or a device); remove it or choose another path", err.Trim());
        Assert.Equal("", stdout);
        // Still the pipe: a file written over it would hold the predictions.
        Assert.Equal(0, new FileInfo(fifo).Length);
        Assert.Equal(["baseline", "baseline/model.json", "baseline/model.safetensors", "out.json"], dir.Files());
    }

    [Fact]
    public void ALockFileThatIsAFolderIsNamed()
    {
        using var dir = new TempDir();
        var run = dir.File("run");
        Directory.CreateDirectory(Path.Combine(run, ".lock"));

        var (code, _, err) = Run(TinyTrain(run));

        Assert.Equal(2, code);
        Assert.Contains($"'{Path.Combine(run, ".lock")}' is a folder; it should be the run directory's lock file: remove it", err);
        Assert.False(File.Exists(Path.Combine(run, "run.json")));
    }

    [Fact]
    public void OutputsThatExistOrAreInputsAreRefusedBeforeAnyWork()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var weights = File.ReadAllBytes(baseline);
        var image = dir.Write("x.png", [1]);

        // predict --out onto the checkpoint it reads.
        var (code, _, err) = Run("predict", "--checkpoint", baseline, "--images", image, "--out", baseline);
        Assert.Equal(2, code);
        Assert.Contains("is also an input", err);
        // merge --out onto its input, even with --force.
        (code, _, err) = Run("merge", "--checkpoint", baseline, "--out", baseline, "--force");
        Assert.Equal(2, code);
        Assert.Contains("is also an input", err);
        Assert.Equal(weights, File.ReadAllBytes(baseline));

        // export --onnx onto an existing file: refused, then replaced with --force.
        var onnx = dir.Write("model.onnx", [7]);
        (code, _, err) = Run("export", "--checkpoint", baseline, "--onnx", onnx, "--check-images", "8");
        Assert.Equal(2, code);
        Assert.Contains("exists; give --force", err);
        Assert.Equal([7], File.ReadAllBytes(onnx));
        (code, _, err) = Run("export", "--checkpoint", baseline, "--onnx", onnx, "--check-images", "8", "--force");
        Assert.True(code == 0, err);
        Assert.True(new FileInfo(onnx).Length > 1000);
    }

    [Fact]
    public void ARunDirectoryIsNeverTheOneItsInputCheckpointLivesInEvenWithForce()
    {
        using var dir = new TempDir();
        var baseline = SmallBaseline(dir);
        var folder = Path.GetDirectoryName(baseline)!;
        var teacher = Path.Combine(folder, "last.safetensors");
        File.Copy(baseline, teacher);
        File.Copy(Updp.Checkpoints.Checkpoint.SidecarPath(baseline), Updp.Checkpoints.Checkpoint.SidecarPath(teacher));
        var before = Hashes(folder);

        // --force would delete the weights train starts from, then write its own model.safetensors there.
        var (code, _, err) = Run([.. TinyTrain(folder), "--checkpoint", baseline, "--force"]);
        Assert.Equal(2, code);
        Assert.Contains($"--out '{folder}' is the run directory of the input '{baseline}'", err);
        // A teacher that is the run's last.safetensors, through a link.
        var link = dir.File("teacher.safetensors");
        File.CreateSymbolicLink(link, teacher);
        (code, _, err) = Run("finetune", "--checkpoint", baseline, "--pruned", "1", "--distill", link, "--out", folder, "--force");
        Assert.Equal(2, code);
        Assert.Contains("writes 'last.safetensors' there", err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(before, Hashes(folder));
    }

    private static Dictionary<string, string> Hashes(string folder) =>
        Directory.EnumerateFiles(folder).ToDictionary(f => f, f => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f))));
}
