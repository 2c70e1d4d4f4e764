using System.Globalization;

namespace Updp.Training;

/// <summary>
/// Training stopped because its numbers stopped being finite: the loss or the gradient norm was NaN
/// or ±inf for <see cref="Trainer.NonFiniteStepLimit"/> steps in a row (no update was taken from
/// them), or the validation loss was. Nothing was saved from the diverged weights; the message names the last good
/// checkpoint, left as it was.
/// </summary>
public sealed class TrainingDivergedException : Exception
{
    public TrainingDivergedException(string what, int epoch, int step, string? lastGood = null)
        : base(Describe(what, epoch, step, lastGood))
    {
        What = what;
        Epoch = epoch;
        Step = step;
        LastGoodCheckpoint = lastGood;
    }

    /// <summary>What was not finite, e.g. "the loss was not finite for 3 consecutive steps".</summary>
    public string What { get; }

    /// <summary>The epoch (1-based) in which training stopped.</summary>
    public int Epoch { get; }

    /// <summary>The step of that epoch (1-based; 0 for the validation after it).</summary>
    public int Step { get; }

    /// <summary>The last checkpoint saved from finite weights, or null when none was.</summary>
    public string? LastGoodCheckpoint { get; }

    /// <summary>The same failure, naming the run's last good checkpoint.</summary>
    public TrainingDivergedException WithLastGood(string? checkpoint) => new(What, Epoch, Step, checkpoint);

    private static string Describe(string what, int epoch, int step, string? lastGood) =>
        string.Create(CultureInfo.InvariantCulture, $"training diverged: {what} (epoch {epoch}{(step > 0 ? $", step {step}" : ", validation")}); ")
        + (lastGood is null
            ? "no checkpoint was saved; try a lower --lr"
            : $"the last good checkpoint is '{lastGood}', left as it was; try a lower --lr");
}
