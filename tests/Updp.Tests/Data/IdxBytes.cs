namespace Updp.Tests.Data;

/// <summary>Builds idx file contents for tests that need many or large files.</summary>
internal static class IdxBytes
{
    public static byte[] Images(int count, int rows, int cols, Func<int, byte>? pixel = null)
    {
        var bytes = new List<byte> { 0, 0, 8, 3 };
        AddBigEndian(bytes, count);
        AddBigEndian(bytes, rows);
        AddBigEndian(bytes, cols);
        for (var i = 0; i < count * rows * cols; i++)
        {
            bytes.Add(pixel?.Invoke(i) ?? (byte)(i * 7));
        }

        return [.. bytes];
    }

    public static byte[] Labels(int count, Func<int, byte>? label = null)
    {
        var bytes = new List<byte> { 0, 0, 8, 1 };
        AddBigEndian(bytes, count);
        for (var i = 0; i < count; i++)
        {
            bytes.Add(label?.Invoke(i) ?? (byte)(i % 10));
        }

        return [.. bytes];
    }

    private static void AddBigEndian(List<byte> bytes, int value)
    {
        bytes.Add((byte)(value >> 24));
        bytes.Add((byte)(value >> 16));
        bytes.Add((byte)(value >> 8));
        bytes.Add((byte)value);
    }
}
