namespace Updp.Training;

/// <summary>Linear warm-up from zero, then cosine decay to <c>MinLr</c>, evaluated per step.</summary>
public sealed record LearningRateSchedule(double BaseLr, long WarmupSteps, long TotalSteps, double MinLr = 0)
{
    public double At(long step)
    {
        if (step < WarmupSteps)
        {
            return BaseLr * (step + 1) / WarmupSteps;
        }
        var decaySteps = Math.Max(1, TotalSteps - WarmupSteps);
        var t = Math.Clamp((double)(step - WarmupSteps) / decaySteps, 0, 1);
        return MinLr + 0.5 * (BaseLr - MinLr) * (1 + Math.Cos(Math.PI * t));
    }
}
