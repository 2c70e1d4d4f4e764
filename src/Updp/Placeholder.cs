namespace Updp;

/// <summary>Library-wide constants.</summary>
public static class UpdpInfo
{
    public const string Name = "updp";
}
