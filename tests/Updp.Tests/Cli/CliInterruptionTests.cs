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
}
