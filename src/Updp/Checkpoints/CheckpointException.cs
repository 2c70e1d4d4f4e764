namespace Updp.Checkpoints;

/// <summary>
/// A checkpoint could not be read, written or loaded into a model. The message names the file and,
/// for a mismatch with the model, the tensors concerned.
/// </summary>
public sealed class CheckpointException : Exception
{
    public CheckpointException(string message) : base(message)
    {
    }

    public CheckpointException(string message, Exception innerException) : base(message, innerException)
    {
    }

    public CheckpointException(string message, string? filePath, Exception? innerException = null) : base(message, innerException) =>
        FilePath = filePath;

    /// <summary>The file the error concerns, when there is one.</summary>
    public string? FilePath { get; }
}
