namespace Updp.Pruning;

/// <summary>
/// The λ schedule of progressive fine-tuning (docs/METHOD.md#stage-3-progressive-fine-tuning): λ rises linearly per iteration
/// from 0 at step 0 to 1 at step <see cref="Ramp"/>·<see cref="TotalSteps"/>, then stays 1.
/// A ramp of 0 gives λ=1 from the first step (the <c>direct</c> method).
/// </summary>
/// <param name="Ramp">The fraction of training over which λ rises, in [0, 1].</param>
/// <param name="TotalSteps">The optimisation steps of the whole training, at least 1.</param>
public sealed record LambdaRamp(double Ramp, long TotalSteps)
{
    /// <summary>The default ramp: the first half of training.</summary>
    public const double DefaultRamp = 0.5;

    public double Ramp { get; } = Ramp is >= 0 and <= 1
        ? Ramp
        : throw new ArgumentOutOfRangeException(nameof(Ramp), Ramp, "the λ ramp must be a fraction of training in [0, 1]");

    public long TotalSteps { get; } = TotalSteps >= 1
        ? TotalSteps
        : throw new ArgumentOutOfRangeException(nameof(TotalSteps), TotalSteps, "training needs at least one step");

    /// <summary>λ before optimisation step <paramref name="step"/> (0-based); after the last step, <see cref="TotalSteps"/> gives 1.</summary>
    public double At(long step)
    {
        var end = Ramp * TotalSteps;
        return step >= end ? 1 : Math.Clamp(step / end, 0, 1);
    }
}
