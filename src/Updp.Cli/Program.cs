using System.CommandLine;
using Updp.Cli;
using Updp.Cli.Commands;

var root = new RootCommand("updp: depth pruning (UPDP) for image classifiers on TorchSharp")
{
    ModelsCommand.Create(),
    InfoCommand.Create(),
    TrainCommand.Create(),
    EvalCommand.Create(),
    PredictCommand.Create(),
};
// Our own handler prints input errors as one line; anything else keeps its stack trace.
return CliErrors.Run(() => root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }));
