using Updp.Models;
using Xunit.Abstractions;

namespace Updp.Tests;

/// <summary>The library's namespaces are layered: no namespace uses, directly or not, one that uses it.</summary>
public class NamespaceGraphTests(ITestOutputHelper output)
{
    private static readonly string Library = typeof(ImageClassifier).Assembly.Location;

    [Fact]
    public void LibraryNamespacesFormNoCycle()
    {
        var edges = NamespaceGraph.Read(Library, "Updp");
        output.WriteLine(NamespaceGraph.Format(edges));
        var cycle = NamespaceGraph.FindCycle(edges);
        Assert.True(cycle is null,
            $"namespace cycle: {string.Join(" → ", cycle ?? [])}\nall edges:\n{NamespaceGraph.Format(edges)}");
    }

    [Fact]
    public void NothingGenericUsesAFamily()
    {
        var edges = NamespaceGraph.Read(Library, "Updp");
        var families = edges.Keys.Where(ns => ns.StartsWith("Updp.Models.", StringComparison.Ordinal)).ToList();
        Assert.Equal(ModelFamilies.All.Count, families.Count);
        // A family builds on the generic layers; no other namespace uses it (families are found by reflection).
        Assert.All(families, f => Assert.Subset(new SortedSet<string> { "Updp.Checkpoints", "Updp.Export", "Updp.Models", "Updp.Pruning.Blocks" }, edges[f]));
        Assert.All(edges, e => Assert.Empty(e.Value.Intersect(families)));
    }

    [Fact]
    public void ReaderSeesBodiesSignaturesLambdasAndTypeofAndTheCycleTheyMake()
    {
        var edges = NamespaceGraph.Read(typeof(NamespaceGraphTests).Assembly.Location, "Updp.Tests.GraphSamples");
        const string ns = "Updp.Tests.GraphSamples.";
        Assert.Equal(
            $"{ns}Body → {ns}Signature\n{ns}Generics → {ns}Body\n{ns}Lambdas → {ns}Generics\n{ns}Signature → {ns}Lambdas",
            NamespaceGraph.Format(edges));
        Assert.Equal([$"{ns}Body", $"{ns}Signature", $"{ns}Lambdas", $"{ns}Generics", $"{ns}Body"], NamespaceGraph.FindCycle(edges));
    }

    [Fact]
    public void FindCycleFindsOneAndReturnsItsPath()
    {
        var graph = Graph(("a", "b"), ("b", "c"), ("c", "d"), ("d", "b"), ("a", "e"));
        Assert.Equal(["b", "c", "d", "b"], NamespaceGraph.FindCycle(graph));
    }

    [Fact]
    public void FindCycleFindsATwoNodeCycle()
    {
        var graph = Graph(("Updp.Pruning", "Updp.Training"), ("Updp.Training", "Updp.Pruning"), ("Updp.Training", "Updp.Models"));
        Assert.Equal(["Updp.Pruning", "Updp.Training", "Updp.Pruning"], NamespaceGraph.FindCycle(graph));
    }

    [Fact]
    public void FindCycleAcceptsADiamond()
    {
        // Two paths to one node are not a cycle.
        var graph = Graph(("cli", "stages"), ("cli", "export"), ("stages", "export"), ("stages", "models"), ("export", "models"));
        Assert.Null(NamespaceGraph.FindCycle(graph));
    }

    private static SortedDictionary<string, SortedSet<string>> Graph(params (string From, string To)[] edges)
    {
        var graph = new SortedDictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        foreach (var (from, to) in edges)
        {
            if (!graph.TryGetValue(from, out var targets))
            {
                graph[from] = targets = new SortedSet<string>(StringComparer.Ordinal);
            }
            targets.Add(to);
        }
        return graph;
    }
}
