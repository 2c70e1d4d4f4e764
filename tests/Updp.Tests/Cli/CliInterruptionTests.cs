using System.Diagnostics;
using Updp.Cli;
using Updp.Training;

namespace Updp.Tests.Cli;

/// <summary>
/// A termination signal during training, sent to a real `updp` process: it stops cleanly, says how
/// to resume, exits 130, and resumes. SIGTERM, because a shell starts background jobs with SIGINT
/// ignored, and CI may run the suite as one; the handler treats both signals alike.
/// </summary>
public class CliInterruptionTests
{
    private static Process Start(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        info.ArgumentList.Add(typeof(UpdpCli).Assembly.Location);
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }
        return Process.Start(info)!;
    }

    [Fact]
    public async Task ASignalStopsTrainingAfterTheCurrentStepExits130AndTheRunResumes()
    {
        using var dir = new TempDir();
        var run = dir.File("run");
        string[] args = ["train", "--model", "convnext_atto", "--data", "fashion-mnist", "--input-size", "32", "--train-limit", "2000", "--val-size", "16",
            "--epochs", "3", "--batch-size", "8", "--max-steps", "60", "--threads", "1", "--out", run];
        using (var process = Start(args))
        {
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEndAsync();
            // Interrupt once the first epoch is saved.
            var state = Path.Combine(run, "train_state.json");
            var clock = Stopwatch.StartNew();
            while (!File.Exists(state) && !process.HasExited && clock.Elapsed < TimeSpan.FromMinutes(5))
            {
                await Task.Delay(50);
            }
            Assert.True(File.Exists(state), "the first epoch did not finish");
            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                kill.WaitForExit();
            }
            Assert.True(process.WaitForExit(TimeSpan.FromMinutes(2)), "the process did not stop");
            var err = await stderr;
            Assert.True(process.ExitCode == 130, $"exit {process.ExitCode}: {err} {await stdout}");
            Assert.Contains("SIGTERM: stopping after the current step", err);
            Assert.Contains("interrupted: the last finished epoch is saved; run the same command with --resume", err);
            Assert.DoesNotContain("   at ", err);
        }
        Assert.False(File.Exists(Path.Combine(run, "metrics.json")));
        Assert.InRange(RunDirectory.ReadJson<TrainState>(Path.Combine(run, "train_state.json")).EpochsDone, 1, 2);

        using (var resumed = Start([.. args, "--resume"]))
        {
            var err = resumed.StandardError.ReadToEndAsync();
            var output = resumed.StandardOutput.ReadToEndAsync();
            Assert.True(resumed.WaitForExit(TimeSpan.FromMinutes(5)));
            Assert.True(resumed.ExitCode == 0, await err + await output);
        }
        Assert.Equal(3, RunDirectory.ReadJson<TrainState>(Path.Combine(run, "train_state.json")).EpochsDone);
        Assert.True(File.Exists(Path.Combine(run, "metrics.json")));
    }

    [Fact]
    public async Task ASignalDuringAVerbThatCannotStopCleanlyExits130WithOneLine()
    {
        using var dir = new TempDir();
        var checkpoint = dir.File("model.safetensors");
        using (var model = Updp.Models.ModelRegistry.Create(Updp.Models.ModelConfig.SmallInput("convnext_atto") with { StemStride = 4 }))
        {
            Updp.Checkpoints.Checkpoint.Save(model, checkpoint, new Updp.Checkpoints.CheckpointMeta
            {
                Classes = Updp.Data.DatasetCatalog.FashionMnistClassNames,
                Preprocessing = new Updp.Data.Preprocessing(28, 224, Updp.Data.Normalization.FashionMnist.Mean, Updp.Data.Normalization.FashionMnist.Std),
            });
        }
        // eval of the 10,000 test images resized to 224 px (minutes), interrupted while the model runs.
        using var process = Start("eval", "--checkpoint", checkpoint, "--batch-size", "8", "--threads", "1");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(20));
            Assert.False(process.HasExited, "eval finished before the signal");
            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                kill.WaitForExit();
            }
            Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)), "the process did not stop");
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
        }
        // libtorch's own warnings (NNPACK on CPUs without it) are not ours.
        var lines = (await stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.Contains("NNPACK", StringComparison.Ordinal)).ToArray();
        Assert.True(process.ExitCode == 130, $"exit {process.ExitCode}: {string.Join('\n', lines)} {await stdout}");
        Assert.Equal(["interrupted (SIGTERM)"], lines);
    }
}
