using System.Reflection;

namespace Updp.Models;

/// <summary>
/// The <see cref="IModelFamily"/> implementations of this assembly, found by reflection: adding a
/// family means adding its folder under <c>Models/</c>, not editing a list. The registries
/// (<see cref="ModelRegistry"/> and those of the other layers) read their entries from here.
/// </summary>
public static class ModelFamilies
{
    private static readonly Lazy<IReadOnlyList<IModelFamily>> Found = new(() => Discover(typeof(ModelFamilies).Assembly.GetTypes()));

    /// <summary>Every family, one instance each, in ordinal order of <see cref="IModelFamily.Name"/>.</summary>
    public static IReadOnlyList<IModelFamily> All => Found.Value;

    /// <summary>
    /// One instance of each non-abstract, non-generic class among <paramref name="types"/> that
    /// implements <see cref="IModelFamily"/>, in ordinal order of their names.
    /// </summary>
    /// <exception cref="InvalidOperationException">A family class has no parameterless constructor, or two families share a name.</exception>
    internal static IReadOnlyList<IModelFamily> Discover(IEnumerable<Type> types)
    {
        var families = types
            .Where(t => t is { IsClass: true, IsAbstract: false, ContainsGenericParameters: false } && typeof(IModelFamily).IsAssignableFrom(t))
            .Select(Create)
            .OrderBy(f => f.Name, StringComparer.Ordinal)
            .ToList();
        if (families.GroupBy(f => f.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw new InvalidOperationException(
                $"model families {string.Join(" and ", twice.Select(f => f.GetType().Name))} share the name '{twice.Key}'");
        }
        return families.AsReadOnly();
    }

    private static IModelFamily Create(Type type) =>
        type.GetConstructor(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic, Type.EmptyTypes) is { } constructor
            ? (IModelFamily)constructor.Invoke(null)
            : throw new InvalidOperationException($"model family {type.Name} needs a parameterless constructor");
}
