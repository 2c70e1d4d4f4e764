using System.CommandLine;
using Spectre.Console;
using Updp.Models;

namespace Updp.Cli.Commands;

/// <summary><c>updp models</c>: the registry.</summary>
internal static class ModelsCommand
{
    public static Command Create()
    {
        var command = new Command("models", "List the registered model variants.");
        command.SetAction(_ =>
        {
            var table = new Table().AddColumns("name", "family", "description");
            foreach (var v in ModelRegistry.All)
            {
                table.AddRow(v.Name, v.Family, Markup.Escape(v.Description));
            }
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }
}
