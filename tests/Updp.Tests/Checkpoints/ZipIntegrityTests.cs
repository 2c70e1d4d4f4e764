using System.IO.Compression;
using System.IO.Hashing;
using Updp.Checkpoints;
using static Updp.Tests.Checkpoints.TestSupport;

namespace Updp.Tests.Checkpoints;

/// <summary>
/// PyTorch checkpoints are zip archives; a damaged member must be refused by its CRC-32 and sizes,
/// not loaded. The fixture is a real torch.save file; members are found by their bytes, read
/// through .NET's zip reader, so the test does not share the loader's zip parsing.
/// </summary>
public sealed class ZipIntegrityTests
{
    private const string PthFixture = "deit_reduced.pt";

    // The members' bytes as .NET's zip reader gives them (it checks no CRC).
    internal static Dictionary<string, byte[]> Members(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        return zip.Entries.ToDictionary(e => e.FullName, e =>
        {
            using var s = e.Open();
            using var m = new MemoryStream();
            s.CopyTo(m);
            return m.ToArray();
        });
    }

    // Where a member's bytes start in the file: the largest members are unique in it.
    internal static int OffsetOf(byte[] file, byte[] member)
    {
        var at = file.AsSpan().IndexOf(member);
        Assert.True(at >= 0);
        Assert.Equal(-1, file.AsSpan(at + 1).IndexOf(member));
        return at;
    }

    // Where a member's central directory header starts: its signature, its name's length at +28 and the name at +46.
    internal static int CentralHeaderOf(byte[] file, string name)
    {
        var nameBytes = System.Text.Encoding.ASCII.GetBytes(name);
        for (var i = file.Length - 46; i >= 0; i--)
        {
            if (file[i] == 'P' && file[i + 1] == 'K' && file[i + 2] == 1 && file[i + 3] == 2
                && BitConverter.ToUInt16(file, i + 28) == nameBytes.Length && file.AsSpan(i + 46).StartsWith(nameBytes))
            {
                return i;
            }
        }
        throw new InvalidOperationException($"no central directory header for '{name}'");
    }

    private static (string Name, byte[] Bytes) LargestDataMember(Dictionary<string, byte[]> members) =>
        members.Where(kv => kv.Key.Contains("/data/", StringComparison.Ordinal))
            .OrderByDescending(kv => kv.Value.Length).ThenBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => (kv.Key, kv.Value)).First();

    [Fact]
    public void UnmodifiedFixtureLoadsEveryMemberByteForByte()
    {
        var path = Fixture(PthFixture);
        var members = Members(path);
        var sd = StateDict.Read(path);
        try
        {
            // Every tensor of this fixture owns its whole storage, so its bytes are one data member's.
            var expected = members.Where(kv => kv.Key.Contains("/data/", StringComparison.Ordinal))
                .Select(kv => Convert.ToHexString(kv.Value)).Order(StringComparer.Ordinal).ToList();
            var actual = sd.Values.Select(t => Convert.ToHexString(Bytes(t))).Order(StringComparer.Ordinal).ToList();
            Assert.Equal(expected.Count, actual.Count);
            Assert.True(expected.SequenceEqual(actual), "the tensors differ from the zip's data members");
        }
        finally
        {
            foreach (var t in sd.Values)
            {
                t.Dispose();
            }
        }
    }

    [Fact]
    public void FlippedDataByteIsRefusedNamingTheMember()
    {
        using var dir = new TempDir();
        var original = Fixture(PthFixture);
        var file = File.ReadAllBytes(original);
        var (name, bytes) = LargestDataMember(Members(original));
        var at = OffsetOf(file, bytes) + (bytes.Length / 2);
        file[at] ^= 0x10;
        var path = dir.Write("flipped.pth", file);

        var e = Assert.Throws<CheckpointException>(() => StateDict.Read(path));
        var damaged = (byte[])bytes.Clone();
        damaged[bytes.Length / 2] ^= 0x10;
        Assert.Equal(
            $"'{path}': member '{name}' fails its CRC check (zip says 0x{Crc32.HashToUInt32(bytes):x8}, data gives 0x{Crc32.HashToUInt32(damaged):x8})",
            e.Message);
        Assert.Equal(path, e.FilePath);
        // Loading a model from it goes through the same check.
        var load = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path, "deit_tiny_patch16_224"));
        Assert.Equal(e.Message, load.Message);
    }

    [Fact]
    public void FlippedPickleByteIsRefusedBeforeUnpickling()
    {
        using var dir = new TempDir();
        var original = Fixture(PthFixture);
        var file = File.ReadAllBytes(original);
        var (name, bytes) = Members(original).Single(kv => kv.Key.EndsWith("/data.pkl", StringComparison.Ordinal));
        // A byte of a tensor name inside the pickle: the unpickler would happily read the renamed tensor.
        var inPickle = bytes.AsSpan().IndexOf("blocks"u8);
        Assert.True(inPickle > 0);
        file[OffsetOf(file, bytes) + inPickle] = (byte)'B';
        var path = dir.Write("renamed.pth", file);

        var e = Assert.Throws<CheckpointException>(() => StateDict.Read(path));
        Assert.StartsWith($"'{path}': member '{name}' fails its CRC check", e.Message);
    }

    [Fact]
    public void SizeThatDisagreesWithTheCentralDirectoryIsRefused()
    {
        using var dir = new TempDir();
        var original = Fixture(PthFixture);
        var file = File.ReadAllBytes(original);
        var (name, bytes) = LargestDataMember(Members(original));
        // The member's central directory header has its uncompressed size at +24.
        var header = CentralHeaderOf(file, name);
        Assert.Equal((uint)bytes.Length, BitConverter.ToUInt32(file, header + 24));
        BitConverter.GetBytes((uint)bytes.Length - 4).CopyTo(file, header + 24);
        var path = dir.Write("resized.pth", file);

        var e = Assert.Throws<CheckpointException>(() => StateDict.Read(path));
        Assert.Contains($"member '{name}'", e.Message);
        Assert.Contains($"{bytes.Length - 4} bytes of data", e.Message);
    }

    [Fact]
    public void ArchiveWithoutEndRecordIsRefused()
    {
        using var dir = new TempDir();
        var file = File.ReadAllBytes(Fixture(PthFixture));
        var path = dir.Write("cut.pth", file[..(file.Length / 2)]);
        var e = Assert.Throws<CheckpointException>(() => StateDict.Read(path));
        Assert.Equal($"'{path}' is not a valid PyTorch checkpoint (zip archive): it has no end-of-central-directory record", e.Message);
    }
}
