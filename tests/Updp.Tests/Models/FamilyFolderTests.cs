using System.Text.RegularExpressions;
using Updp.Models;

namespace Updp.Tests.Models;

/// <summary>
/// A family lives in one folder, <c>src/Updp/Models/&lt;Family&gt;/</c>: no other source file, comments
/// and strings included, names one of its types, so adding or removing a family touches nothing else.
/// </summary>
public class FamilyFolderTests
{
    [Fact]
    public void OnlyTheFamilysOwnFolderNamesItsTypes()
    {
        // The family types are those of the Updp.Models.<Family> namespaces; their folders are src/Updp/Models/<Family>/.
        var root = RepositoryRoot();
        var families = typeof(ModelFamilies).Assembly.GetTypes()
            .Where(t => t.Namespace is { } ns && ns.StartsWith("Updp.Models.", StringComparison.Ordinal) && !t.Name.Contains('<') && t.DeclaringType is null)
            .GroupBy(t => t.Namespace!["Updp.Models.".Length..])
            .ToDictionary(g => g.Key, g => g.Select(t => t.Name.Split('`')[0]).ToList());
        Assert.Equal(ModelFamilies.All.Count, families.Count);
        var names = new Regex($@"\b({string.Join('|', families.Values.SelectMany(n => n))})\b");
        var folders = families.Keys.Select(f => Path.Combine(root, "src", "Updp", "Models", f) + Path.DirectorySeparatorChar).ToList();
        var offending = Directory.EnumerateFiles(Path.Combine(root, "src"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            .Where(f => !folders.Any(folder => f.StartsWith(folder, StringComparison.Ordinal)))
            .SelectMany(f => File.ReadLines(f).Select((line, i) => (File: Path.GetRelativePath(root, f), Line: i + 1, Match: names.Match(line))))
            .Where(x => x.Match.Success)
            .Select(x => $"{x.File}:{x.Line}: {x.Match.Value}")
            .ToList();
        Assert.True(offending.Count == 0, "family types named outside their folder:\n" + string.Join('\n', offending));
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Updp.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no Updp.sln above {AppContext.BaseDirectory}");
    }
}
