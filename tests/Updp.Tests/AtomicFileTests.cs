namespace Updp.Tests;

/// <summary>A failed atomic write names the file the caller asked for, not its temporary sibling, and leaves neither.</summary>
public class AtomicFileTests
{
    [Fact]
    public void AFailedWriteNamesTheTargetWithoutTheTemporaryFile()
    {
        // No file can be created in /proc, not even by root.
        const string target = "/proc/updp-atomic-test.json";

        var e = Assert.Throws<IOException>(() => AtomicFile.WriteAllText(target, "{}"));

        Assert.StartsWith($"cannot write '{target}': ", e.Message);
        Assert.DoesNotContain(".tmp", e.Message);
        Assert.False(File.Exists(target));
        Assert.Empty(Directory.EnumerateFiles("/proc", ".updp-atomic-test.json.*"));
    }

    [Theory]
    [InlineData("No space left on device : '/x/.y.json.0123.tmp'", "No space left on device")]
    [InlineData("Could not find a part of the path '/x/y'.", "Could not find a part of the path '/x/y'")]
    public void TheReasonOfAnIoErrorDropsThePathDotNetAppends(string message, string reason) =>
        Assert.Equal(reason, AtomicFile.Reason(new IOException(message)));

    [Fact]
    public void AnAccessOrNotFoundErrorIsNamedWithoutItsPath()
    {
        Assert.Equal("access denied", AtomicFile.Reason(new UnauthorizedAccessException("Access to the path '/x/.y.0123.tmp' is denied.")));
        Assert.Equal("no such file or directory", AtomicFile.Reason(new FileNotFoundException("Could not find file '/x/.y.0123.tmp'.")));
        Assert.Equal("no such file or directory", AtomicFile.Reason(new DirectoryNotFoundException("Could not find a part of the path '/x/y'.")));
    }
}
