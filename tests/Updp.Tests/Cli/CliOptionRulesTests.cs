using Updp.Cli;

namespace Updp.Tests.Cli;

/// <summary>
/// Bad option values are refused while the command line is parsed (<see cref="OptionRules"/>):
/// exit 2, one line naming the option and what it accepts, nothing written, nothing trained.
/// </summary>
public partial class CliTests
{
    [Theory]
    [InlineData("train --model convnext_atto --out OUT --label-smoothing 2", "--label-smoothing", "[0, 1)")]
    [InlineData("train --model convnext_atto --out OUT --drop-path 1.5", "--drop-path", "[0, 1)")]
    [InlineData("train --model convnext_atto --out OUT --max-steps 0", "--max-steps", "≥ 1")]
    [InlineData("train --model convnext_atto --out OUT --train-limit 0", "--train-limit", "≥ 1")]
    [InlineData("train --model convnext_atto --out OUT --lr NaN", "--lr", "finite")]
    [InlineData("train --model convnext_atto --out OUT --lr -0.1", "--lr", "(0, 10]")]
    [InlineData("train --model convnext_atto --out OUT --lr Infinity", "--lr", "finite")]
    [InlineData("train --model convnext_atto --out OUT --weight-decay -1", "--weight-decay", "[0, 10]")]
    [InlineData("train --model convnext_atto --out OUT --warmup-epochs -1", "--warmup-epochs", "-1")]
    [InlineData("train --model convnext_atto --out OUT --batch-size 100000000", "--batch-size", "from 1 to 4096")]
    [InlineData("train --model convnext_atto --out OUT --batch-size 0", "--batch-size", "got 0")]
    [InlineData("train --model convnext_atto --out OUT --epochs 0", "--epochs", "got 0")]
    [InlineData("train --model convnext_atto --out OUT --seed -1", "--seed", "≥ 0")]
    [InlineData("train --model convnext_atto --out OUT --threads 10000", "--threads", "got 10000")]
    [InlineData("train --model convnext_atto --out OUT --threads 0", "--threads", "got 0")]
    [InlineData("train --model convnext_atto --out OUT --val-size -5", "--val-size", "≥ 0")]
    [InlineData("train --model convnext_atto --out OUT --input-size 4", "--input-size", "from 8 to 2048")]
    [InlineData("train --model convnext_atto --out OUT --ls-init 0", "--ls-init", "(0, 10]")]
    [InlineData("train --model convnext_atto --out OUT --crop-pct 3", "--crop-pct", "[0.25, 2]")]
    [InlineData("train --model convnext_atto --out OUT --pretrained /nonexistent/x.pth", "--pretrained", "does not exist")]
    [InlineData("info --model convnext_atto --num-classes -3", "--num-classes", "got -3")]
    [InlineData("info --model convnext_atto --in-chans 0", "--in-chans", "got 0")]
    [InlineData("predict --checkpoint CKPT --images CKPT --top -1", "--top", "got -1")]
    [InlineData("predict --checkpoint CKPT --images /nonexistent.png", "--images", "does not exist")]
    [InlineData("eval --checkpoint DIR", "--checkpoint", "is a folder")]
    [InlineData("eval --checkpoint EMPTY", "--checkpoint", "empty or not a regular file")]
    [InlineData("bench --model convnext_atto --runs 0", "--runs", "got 0")]
    [InlineData("bench --model convnext_atto --resolution 0", "--resolution", "'0' is not a positive integer")]
    [InlineData("bench --model convnext_atto --resolution 32,4", "--resolution", "from 8 to 2048, got 4")]
    [InlineData("bench --model convnext_atto --batch 1,99999", "--batch", "got 99999")]
    [InlineData("export --checkpoint CKPT --onnx OUT/m.onnx --opset 3", "--opset", "got 3")]
    [InlineData("export --checkpoint CKPT --onnx DIR", "--onnx", "is a folder")]
    [InlineData("prune --checkpoint CKPT --blocks 2 --ramp 2 --out OUT", "--ramp", "[0, 1]")]
    [InlineData("prune --checkpoint CKPT --blocks 2 --distill-alpha 1.5 --out OUT", "--distill-alpha", "[0, 1]")]
    [InlineData("prune --checkpoint CKPT --blocks 2 --distill-temperature 0 --out OUT", "--distill-temperature", "(0, 100]")]
    [InlineData("prune --checkpoint CKPT --blocks 2 --distill /nonexistent/t.safetensors --out OUT", "--distill", "does not exist")]
    [InlineData("prune --checkpoint CKPT --blocks 2 --search-population 1 --out OUT", "--search-population", "got 1")]
    [InlineData("prune --checkpoint CKPT --latency-budget -3 --out OUT", "--latency-budget", "-3")]
    [InlineData("prune --checkpoint CKPT --latency-budget 100% --out OUT", "--latency-budget", "percentage in (0, 100)")]
    [InlineData("search --checkpoint CKPT --latency-budget fast --out OUT", "--latency-budget", "got 'fast'")]
    [InlineData("prune --checkpoint CKPT --latency-budget 70% --latency-engine tensorrt --out OUT", "--latency-engine", "expected torchsharp or onnxruntime, got 'tensorrt'")]
    [InlineData("search --checkpoint CKPT --latency-budget 70% --latency-checks -1 --out OUT", "--latency-checks", "-1")]
    [InlineData("search --checkpoint CKPT --blocks 2 --calibration-batches 0 --out OUT", "--calibration-batches", "got 0")]
    [InlineData("train --model convnext_atto --out CKPT", "--out", "is a file")]
    [InlineData("train --model convnext_atto --out CKPT/run", "--out", "is a file, not a folder")]
    // In the invariant culture ',' separates thousands: "0,001" parsed as 1.
    [InlineData("train --model convnext_atto --out OUT --lr 0,001", "--lr", "got '0,001' (',' is not accepted)")]
    [InlineData("prune --checkpoint CKPT --latency-budget 1,5 --out OUT", "--latency-budget", "got '1,5'")]
    // No file can be created in /proc, not even by root.
    [InlineData("train --model convnext_atto --out /proc/updp-test/run", "--out", "no file can be created in '/proc'")]
    [InlineData("export --checkpoint CKPT --onnx /proc/updp-test.onnx", "--onnx", "no file can be created in '/proc'")]
    [InlineData("predict --checkpoint CKPT --images CKPT --out /proc/updp-test.json", "--out", "no file can be created in '/proc'")]
    // A value that is not a number at all is named in the same words, not as a .NET type.
    [InlineData("eval --checkpoint CKPT --batch-size 1e3", "--batch-size", "expected an integer, got '1e3'")]
    [InlineData("train --model convnext_atto --out OUT --epochs 99999999999", "--epochs", "expected an integer, got '99999999999' (out of range)")]
    [InlineData("train --model convnext_atto --out OUT --max-steps 2147483648", "--max-steps", "expected an integer, got '2147483648' (out of range)")]
    [InlineData("train --model convnext_atto --out OUT --lr abc", "--lr", "expected a number with a decimal point, e.g. 0.001, got 'abc'")]
    public void ABadValueIsRefusedBeforeAnyWorkWithOneLineNamingTheOption(string args, string option, string expected)
    {
        using var dir = new TempDir();
        var checkpoint = dir.Write("model.safetensors", [1, 2, 3]);
        var empty = dir.Write("empty.safetensors", []);
        Directory.CreateDirectory(dir.File("folder"));
        var before = dir.Files();
        var argv = args.Split(' ').Select(a => a
            .Replace("OUT", dir.File("out"), StringComparison.Ordinal)
            .Replace("CKPT", checkpoint, StringComparison.Ordinal)
            .Replace("EMPTY", empty, StringComparison.Ordinal)
            .Replace("DIR", dir.File("folder"), StringComparison.Ordinal)).ToArray();

        var (code, stdout, err) = Run(argv);

        Assert.Equal(2, code);
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // One line: the error, ending with the pointer to the verb's help.
        Assert.Single(lines);
        Assert.StartsWith($"error: {option}:", lines[0]);
        Assert.EndsWith("--help`)", lines[0].TrimEnd());
        Assert.Contains(expected, lines[0]);
        Assert.DoesNotContain(" at Updp.", err);
        Assert.Equal("", stdout);
        Assert.Equal(before, dir.Files());
    }

    [Fact]
    public void AFailureThatIsNotBadInputExitsOneWithOneLineAndTheStackTraceOnlyWithVerbose()
    {
        // A merge whose verification fails is a failed run, not bad input.
        var failure = new Updp.Pruning.Blocks.MergeVerificationException("merged and unmerged outputs differ by 3 (tolerance 1e-4)", 3, 1e-4, [1]);
        Assert.Equal(1, CliErrors.ExitCode(failure));
        Assert.Equal(2, CliErrors.ExitCode(new ArgumentException("bad")));
        Assert.Equal(2, CliErrors.ExitCode(new Updp.Checkpoints.CheckpointException("bad file")));
        Assert.Equal(130, CliErrors.ExitCode(new OperationCanceledException()));

        var (oldErr, err) = (Console.Error, new StringWriter());
        Console.SetError(err);
        try
        {
            Assert.Equal(1, CliErrors.Run(() => throw failure, verbose: false));
            Assert.Equal(1, CliErrors.Run(() => throw failure, verbose: true));
        }
        finally
        {
            Console.SetError(oldErr);
        }
        var output = err.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("error: merged and unmerged outputs differ by 3 (tolerance 1e-4)", output[0]);
        Assert.Equal("(run again with --verbose for the stack trace)", output[1]);
        Assert.Equal(output[0], output[2]);
        Assert.Contains("MergeVerificationException", output[3]);
        Assert.Contains(output.Skip(3), l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
    }
}
