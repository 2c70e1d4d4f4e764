using System.Collections;
using System.Text;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Updp.Checkpoints;

/// <summary>
/// Reading state dicts (name → tensor) from safetensors and PyTorch files, and loading them strictly
/// into a module. The pieces <see cref="Checkpoint"/> is built from, for any model family.
/// </summary>
public static class StateDict
{
    /// <summary>Keys under which training scripts commonly nest the state dict in a PyTorch checkpoint, tried in order.</summary>
    public static readonly IReadOnlyList<string> NestedKeys = ["state_dict", "model_state_dict", "model"];

    // Lists in error messages stop here: a checkpoint for the wrong model can mismatch in hundreds of tensors.
    private const int MaxListed = 20;

    /// <summary>
    /// Reads every tensor of a state dict file. The format is recognised by content, not extension:
    /// a PyTorch zip checkpoint (<c>torch.save</c>, usually .pt/.pth/.bin) or a safetensors file.
    /// A PyTorch file whose top level is not itself a state dict may nest one under one of
    /// <see cref="NestedKeys"/>; every member of its zip archive must match the CRC-32 and size the
    /// archive records for it. The caller owns (and should dispose) the returned tensors.
    /// </summary>
    /// <exception cref="CheckpointException">The file is missing, unreadable, damaged or not a state dict.</exception>
    public static Dictionary<string, Tensor> Read(string path) => Read(path, out _);

    internal static Dictionary<string, Tensor> Read(string path, out Dictionary<string, string> safetensorsMetadata)
    {
        safetensorsMetadata = [];
        var head = new byte[9];
        int got;
        try
        {
            using var probe = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            got = probe.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"cannot read '{path}': {e.Message}", path, e);
        }
        if (got == 0)
        {
            throw new CheckpointException($"'{path}' is empty", path);
        }
        try
        {
            if (got >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)
            {
                return ReadPyTorch(path);
            }
            // A safetensors file starts with its header's length (u64, little-endian) and then '{': a
            // length whose low byte is 0x80 must not pass for a pickle.
            if (head[0] == 0x80 && !(got == head.Length && head[8] == '{'))
            {
                // A pickle protocol marker at offset 0: torch.save with _use_new_zipfile_serialization=False.
                throw new CheckpointException(
                    $"'{path}' is in PyTorch's legacy (pre-1.6) serialization format; re-save it with torch.save(state_dict, path) from a recent PyTorch", path);
            }
            // Anything else should be safetensors; say so only when the name claims it is.
            var expected = Path.GetExtension(path).Equals(".safetensors", StringComparison.OrdinalIgnoreCase)
                ? "a valid safetensors file"
                : "a PyTorch checkpoint (torch.save's zip archive) or a valid safetensors file";
            return Safetensors.Read(path, out safetensorsMetadata, expected);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"cannot read '{path}': {e.Message}", path, e);
        }
    }

    private static Dictionary<string, Tensor> ReadPyTorch(string path)
    {
        // The zip's CRCs are checked here because .NET's ZipArchive, which the unpickler reads
        // through, does not: the pickle (and the lengths in it) before it is parsed, the tensor data
        // on a second thread while the unpickler reads it (a sequential pass would add about a fifth
        // to the load time).
        ZipIntegrity.CentralDirectory directory;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            directory = ZipIntegrity.ReadDirectory(stream, path);
        }
        var pickles = directory.Members.Where(m => m.Name.EndsWith("data.pkl", StringComparison.Ordinal)).ToList();
        foreach (var pickle in pickles)
        {
            ZipIntegrity.VerifyPickle(path, directory, pickle);
        }
        var check = Task.Run(() => ZipIntegrity.Verify(path, directory, directory.Members.Except(pickles)));

        Hashtable? root = null;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            root = PyTorchUnpickler.UnpickleStateDict(stream, leaveOpen: true);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The unpickler reports a damaged zip, a missing data.pkl, unknown pickled classes and
            // whole pickled models through many exception types; all mean the same to the caller.
            throw new CheckpointException($"cannot read '{path}' as a PyTorch checkpoint: {FirstLine(e.Message)}", path, e);
        }
        finally
        {
            // Waited for whatever happened: a damaged member explains an unpickling failure better
            // than the unpickler's own message, so its exception replaces that one.
            try
            {
                check.GetAwaiter().GetResult();
            }
            catch when (root is not null)
            {
                DisposeTensors(root, keep: null);
                throw;
            }
        }

        var chosen = IsStateDict(root) ? root : NestedKeys.Select(k => root[k]).OfType<Hashtable>().FirstOrDefault(IsStateDict);
        if (chosen is null)
        {
            DisposeTensors(root, keep: null);
            var keys = root.Keys.Cast<object>().Select(k => $"'{k}'").Order(StringComparer.Ordinal).ToList();
            throw new CheckpointException(
                $"'{path}' holds no state dict: its top level has {Describe(keys)} instead of tensors, and none of " +
                $"{string.Join(", ", NestedKeys.Select(k => $"'{k}'"))} holds a name → tensor map", path);
        }
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in chosen)
        {
            result.Add((string)e.Key, (Tensor)e.Value!);
        }
        // Optimizer state and the like come along in training checkpoints; free them now rather than at finalization.
        DisposeTensors(root, keep: chosen);
        return result;
    }

    // libtorch appends a C++ backtrace to its messages; the first line is the one for people.
    internal static string FirstLine(string message)
    {
        var end = message.IndexOfAny(['\r', '\n']);
        return end < 0 ? message : message[..end];
    }

    private static bool IsStateDict(Hashtable h) =>
        h.Count > 0 && h.Keys.Cast<object>().All(k => k is string) && h.Values.Cast<object?>().All(v => v is Tensor);

    private static void DisposeTensors(object? node, Hashtable? keep)
    {
        switch (node)
        {
            case Tensor t:
                t.Dispose();
                break;
            case Hashtable h when !ReferenceEquals(h, keep):
                foreach (var v in h.Values)
                {
                    DisposeTensors(v, keep);
                }
                break;
            case IEnumerable list and not string and not Hashtable:
                foreach (var v in list)
                {
                    DisposeTensors(v, keep);
                }
                break;
        }
    }

    private static string Describe(List<string> keys) =>
        keys.Count == 0 ? "no keys" : "keys " + string.Join(", ", keys.Take(MaxListed)) + (keys.Count > MaxListed ? $", … ({keys.Count} in all)" : "");

    /// <summary>
    /// Writes tensors as a safetensors file (order kept; any device; non-contiguous tensors are
    /// copied contiguous). Not atomic: <see cref="Checkpoint.Save"/> is the atomic, sidecar-writing form.
    /// </summary>
    public static void WriteSafetensors(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        Safetensors.Write(stream, tensors, metadata);
    }

    /// <summary>
    /// Removes <paramref name="prefix"/> from every name when every name starts with it (as
    /// <c>nn.DataParallel</c>'s <c>module.</c> does); otherwise returns the names unchanged.
    /// The tensors are shared, not copied.
    /// </summary>
    public static Dictionary<string, Tensor> StripPrefix(IReadOnlyDictionary<string, Tensor> stateDict, string prefix)
    {
        var all = stateDict.Count > 0 && stateDict.Keys.All(k => k.StartsWith(prefix, StringComparison.Ordinal));
        return stateDict.ToDictionary(kv => all ? kv.Key[prefix.Length..] : kv.Key, kv => kv.Value, StringComparer.Ordinal);
    }

    /// <summary>
    /// Renames tensors with <paramref name="mapKey"/> (a family's naming filter): it returns the
    /// model's name for a checkpoint name, or null to drop that tensor. The tensors are shared, not copied.
    /// </summary>
    /// <exception cref="CheckpointException">Two checkpoint names map to the same model name.</exception>
    public static Dictionary<string, Tensor> MapKeys(IReadOnlyDictionary<string, Tensor> stateDict, Func<string, string?> mapKey, string sourceName)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var from = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, t) in stateDict)
        {
            var name = mapKey(key);
            if (name is null)
            {
                continue;
            }
            if (!from.TryAdd(name, key))
            {
                throw new CheckpointException($"'{sourceName}': tensors '{from[name]}' and '{key}' both map to '{name}'", sourceName);
            }
            result.Add(name, t);
        }
        return result;
    }

    /// <summary>
    /// True when two shapes are equal once trailing dimensions of size 1 are dropped from both,
    /// e.g. [4C, C] and [4C, C, 1, 1] (timm's Linear and 1×1-conv MLP weights). Such tensors have
    /// the same elements in the same order, so a reshape converts between them.
    /// </summary>
    public static bool SameUpToTrailingOnes(ReadOnlySpan<long> a, ReadOnlySpan<long> b) =>
        TrimTrailingOnes(a).SequenceEqual(TrimTrailingOnes(b));

    private static ReadOnlySpan<long> TrimTrailingOnes(ReadOnlySpan<long> s)
    {
        var n = s.Length;
        while (n > 0 && s[n - 1] == 1)
        {
            n--;
        }
        return s[..n];
    }

    /// <summary>
    /// Copies a state dict into <paramref name="model"/>'s parameters and buffers, strictly: every
    /// model tensor must be present, no other tensor may be, and shapes must match exactly except
    /// that a shape differing from the model's only in trailing size-1 dimensions (see
    /// <see cref="SameUpToTrailingOnes"/>) is reshaped. Floating-point data may differ in precision
    /// (it is converted); integer, boolean and floating-point tensors never stand in for each other.
    /// Nothing is copied unless everything fits. The caller keeps ownership of <paramref name="stateDict"/>.
    /// </summary>
    /// <param name="sourceName">Names the state dict in error messages, usually its file path.</param>
    /// <param name="mapKey">Optional naming filter applied first, as in <see cref="MapKeys"/>.</param>
    /// <exception cref="CheckpointException">Missing, unexpected or mismatched tensors; the message lists them.</exception>
    public static void LoadInto(nn.Module model, IReadOnlyDictionary<string, Tensor> stateDict, string sourceName, Func<string, string?>? mapKey = null)
    {
        var source = mapKey is null ? stateDict : MapKeys(stateDict, mapKey, sourceName);
        var target = model.state_dict();

        var missing = target.Where(kv => !source.ContainsKey(kv.Key)).Select(kv => $"{kv.Key} {Shape(kv.Value)}").ToList();
        var unexpected = source.Where(kv => !target.ContainsKey(kv.Key)).OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => $"{kv.Key} {Shape(kv.Value)}").ToList();
        var mismatched = new List<string>();
        foreach (var (name, dst) in target)
        {
            if (!source.TryGetValue(name, out var src))
            {
                continue;
            }
            if (!SameUpToTrailingOnes(dst.shape, src.shape))
            {
                mismatched.Add($"{name}: model {Shape(dst)}, checkpoint {Shape(src)}");
            }
            else if (Kind(dst) != Kind(src))
            {
                mismatched.Add($"{name}: model {dst.dtype}, checkpoint {src.dtype}");
            }
        }
        if (missing.Count + unexpected.Count + mismatched.Count > 0)
        {
            var sb = new StringBuilder($"'{sourceName}' does not fit the model ({model.GetName()}):");
            Append(sb, "missing from the checkpoint", missing);
            Append(sb, "unexpected in the checkpoint", unexpected);
            Append(sb, "wrong shape or type", mismatched);
            throw new CheckpointException(sb.ToString(), sourceName);
        }

        using var _ = no_grad();
        foreach (var (name, dst) in target)
        {
            var src = source[name];
            if (dst.shape.AsSpan().SequenceEqual(src.shape))
            {
                dst.copy_(src);
            }
            else
            {
                using var reshaped = src.reshape(dst.shape);
                dst.copy_(reshaped);
            }
        }
    }

    private static void Append(StringBuilder sb, string what, List<string> items)
    {
        if (items.Count == 0)
        {
            return;
        }
        sb.Append($"\n  {what} ({items.Count}):");
        foreach (var item in items.Take(MaxListed))
        {
            sb.Append("\n    ").Append(item);
        }
        if (items.Count > MaxListed)
        {
            sb.Append($"\n    … and {items.Count - MaxListed} more");
        }
    }

    private static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";

    private static int Kind(Tensor t) => t.dtype == ScalarType.Bool ? 0 : t.is_complex() ? 1 : t.is_floating_point() ? 2 : 3;
}
