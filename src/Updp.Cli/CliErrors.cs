namespace Updp.Cli;

/// <summary>Turns the library's input errors into one clear line on stderr and exit code 2.</summary>
internal static class CliErrors
{
    public static int Run(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (IsUserError(e))
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
            // Plain text: a console library would wrap a long path over several lines.
            Console.Error.WriteLine($"error: {message}");
            return 2;
        }
    }

    // NotSupportedException: what a model family does not support yet (an ONNX emitter, a pruning rule).
    private static bool IsUserError(Exception e) => e is ArgumentException or IOException or InvalidDataException or NotSupportedException
        or UnauthorizedAccessException or FormatException or System.Text.Json.JsonException or Checkpoints.CheckpointException;
}
