using System.CommandLine;
using Spectre.Console;
using Updp.Cli.Commands;

namespace Updp.Cli;

/// <summary>The <c>updp</c> command line: one class per verb under Commands/.</summary>
public static partial class UpdpCli
{
    /// <summary>Prints the stack trace of a failure (every verb).</summary>
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "On an error, print the stack trace too.", Recursive = true };

    public static RootCommand Build()
    {
        var root = new RootCommand("updp: depth pruning (UPDP) for image classifiers on TorchSharp")
        {
            Verbose,
            ModelsCommand.Create(),
            InfoCommand.Create(),
            TrainCommand.Create(),
            EvalCommand.Create(),
            PredictCommand.Create(),
            BenchCommand.Create(),
            ExportCommand.Create(),
            SupernetCommand.Create(),
            SearchCommand.Create(),
            FinetuneCommand.Create(),
            MergeCommand.Create(),
            PruneCommand.Create(),
            ReportCommand.Create(),
            DemoCommand.Create(),
        };
        // The built-in --version prints the entry assembly's version (the test host's under tests);
        // ours is the library's, the one version of the build and both packages.
        foreach (var version in root.Options.OfType<VersionOption>())
        {
            version.Action = new PrintVersion();
        }
        return root;
    }

    /// <summary>Runs the tool; errors print one line on stderr and return 2 (bad input), 1 (failed run) or 130 (interrupted).</summary>
    public static int Run(string[] args)
    {
        // Spectre.Console assumes 80 columns when output goes to a file or pipe, which wraps the
        // tables; logs read better at the terminal width the user had, or 120.
        if (Console.IsOutputRedirected)
        {
            AnsiConsole.Profile.Width = int.TryParse(Environment.GetEnvironmentVariable("COLUMNS"), out var columns) && columns > 0 ? columns : 120;
        }
        using var interruption = Interruption.Listen();
        return CliErrors.Run(() =>
        {
            var parsed = Build().Parse(args);
            if (parsed.Errors.Count > 0)
            {
                // Like the library's input errors: one line each and exit code 2, not a help page; the
                // pointer to the verb's help ends the last line rather than adding one.
                var help = $"see `updp {string.Join(' ', CommandPath(parsed.CommandResult))} --help`".Replace("updp  --help", "updp --help", StringComparison.Ordinal);
                for (var i = 0; i < parsed.Errors.Count; i++)
                {
                    var message = Plain(parsed.Errors[i].Message);
                    Console.Error.WriteLine(i == parsed.Errors.Count - 1 ? $"error: {message.TrimEnd('.')} ({help})" : $"error: {message}");
                }
                return CliErrors.BadInput;
            }
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }, verbose: args.Contains(Verbose.Name));
    }

    /// <summary>
    /// A parse error in the words of <see cref="OptionRules"/>: System.CommandLine's "Cannot parse
    /// argument '1e3' for option '--batch-size' as expected type 'System.Int32'." names a .NET type;
    /// the user reads "--batch-size: expected an integer, got '1e3'" (docs/RELIABILITY.md).
    /// </summary>
    internal static string Plain(string message)
    {
        var match = TypeError().Match(message);
        if (!match.Success)
        {
            return message;
        }
        var value = match.Groups["value"].Value;
        // Digits that do not fit are an integer out of range, not a malformed one.
        var tooLarge = value.TrimStart('-', '+') is { Length: > 0 } digits && digits.All(char.IsAsciiDigit) ? " (out of range)" : "";
        // An optional value's type reads "System.Nullable`1[System.Int32]".
        var type = match.Groups["type"].Value;
        if (type.StartsWith("Nullable`1[", StringComparison.Ordinal))
        {
            type = type["Nullable`1[".Length..].TrimEnd(']').Replace("System.", "", StringComparison.Ordinal);
        }
        var expected = type switch
        {
            "Int32" or "Int64" => "an integer",
            "Int32[]" or "Int64[]" => "comma-separated integers",
            "Double" or "Single" => "a number with a decimal point, e.g. 0.001",
            "Boolean" => "true or false",
            var other => $"a value of type {other}",
        };
        return $"{match.Groups["option"].Value}: expected {expected}, got '{value}'{tooLarge}";
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^Cannot parse argument '(?<value>.*)' for option '(?<option>[^']+)' as expected type '(System\.)?(?<type>[^']+)'\.?$")]
    private static partial System.Text.RegularExpressions.Regex TypeError();

    private static IEnumerable<string> CommandPath(System.CommandLine.Parsing.CommandResult? result)
    {
        var names = new List<string>();
        for (var r = result; r?.Parent is System.CommandLine.Parsing.CommandResult parent; r = parent)
        {
            names.Insert(0, r.Command.Name);
        }
        return names;
    }

    private sealed class PrintVersion : System.CommandLine.Invocation.SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            Console.Out.WriteLine(UpdpInfo.Version);
            return 0;
        }
    }
}
