namespace Updp.Cli;

/// <summary>
/// The top-level handler: every exception ends as one line on stderr and an exit code, 2 for bad
/// input (the library's input errors), 130 for an interrupted run, 1 for a run that failed
/// otherwise. The stack trace is printed only with <c>--verbose</c>.
/// </summary>
internal static class CliErrors
{
    public const int Failed = 1;
    public const int BadInput = 2;
    public const int Interrupted = 130;

    public static int Run(Func<int> action, bool verbose)
    {
        try
        {
            return action();
        }
        catch (Exception) when (Interruption.Exiting)
        {
            // The process is ending with 130 and has said so; what failed as it did is not news.
            return Interrupted;
        }
        catch (Exception e)
        {
            var error = e is AggregateException { InnerExceptions.Count: 1 } aggregate ? aggregate.InnerExceptions[0] : e;
            var code = ExitCode(error);
            if (code == Interrupted)
            {
                Console.Error.WriteLine($"interrupted{(Interruption.ResumeHint is { } hint ? $": {hint}" : "")}");
                return code;
            }
            Console.Error.WriteLine($"error: {OneLine(error)}");
            if (verbose)
            {
                Console.Error.WriteLine(e);
            }
            else if (code == Failed)
            {
                Console.Error.WriteLine("(run again with --verbose for the stack trace)");
            }
            return code;
        }
    }

    /// <summary>The exit code for an exception that ended a verb.</summary>
    public static int ExitCode(Exception e) => e switch
    {
        OperationCanceledException => Interrupted,
        _ when IsUserError(e) => BadInput,
        _ => Failed,
    };

    // The library reports bad input with these types; NotSupportedException is what a model family
    // does not support yet (an ONNX emitter, a pruning rule).
    private static bool IsUserError(Exception e) => e is ArgumentException or IOException or InvalidDataException or NotSupportedException
        or UnauthorizedAccessException or FormatException or System.Text.Json.JsonException or Checkpoints.CheckpointException;

    private static string OneLine(Exception e)
    {
        // ArgumentException appends " (Parameter 'x')", which names our code, not the user's input.
        var message = e is ArgumentException a && a.ParamName is not null
            ? a.Message.Replace($" (Parameter '{a.ParamName}')", "", StringComparison.Ordinal)
            : e.Message;
        if (e is ArgumentOutOfRangeException { ActualValue: { } actual })
        {
            // "…\nActual value was 99." becomes one line.
            message = $"{message.Split('\n')[0].TrimEnd()} (got {actual})";
        }
        var lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var line = lines.Length > 0 ? lines[0] : e.GetType().Name;
        // An exception that is not one of ours says what kind it is.
        return e.GetType().Namespace?.StartsWith("Updp", StringComparison.Ordinal) == true || IsUserError(e) ? line : $"{line} ({e.GetType().Name})";
    }
}
