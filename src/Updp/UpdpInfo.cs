using System.Reflection;

namespace Updp;

/// <summary>Facts about this build of the library.</summary>
public static class UpdpInfo
{
    /// <summary>
    /// The version of this build of Updp, e.g. <c>0.1.0</c>: the <c>Version</c> of
    /// Directory.Build.props, which both packages (the library and the <c>updp</c> tool) carry.
    /// </summary>
    public static string Version { get; } =
        typeof(UpdpInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
        ?? typeof(UpdpInfo).Assembly.GetName().Version?.ToString(3)
        ?? "unknown";
}
