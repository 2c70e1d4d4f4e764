using Updp.Training;

namespace Updp.Tests.Training;

public class LearningRateScheduleTests
{
    [Fact]
    public void WarmsUpLinearlyThenFollowsTheCosine()
    {
        var s = new LearningRateSchedule(BaseLr: 1e-3, WarmupSteps: 10, TotalSteps: 110, MinLr: 1e-5);
        Assert.Equal(1e-4, s.At(0), 12);
        Assert.Equal(5e-4, s.At(4), 12);
        Assert.Equal(1e-3, s.At(9), 12);
        Assert.Equal(1e-3, s.At(10), 12);
        for (var step = 10; step <= 110; step += 7)
        {
            var t = (step - 10) / 100.0;
            Assert.Equal(1e-5 + (0.5 * (1e-3 - 1e-5) * (1 + Math.Cos(Math.PI * t))), s.At(step), 12);
        }
        Assert.Equal(1e-5, s.At(110), 12);
        Assert.Equal(1e-5, s.At(500), 12);
    }

    [Fact]
    public void DecreasesMonotonicallyAfterWarmup()
    {
        var s = new LearningRateSchedule(3e-3, 5, 200);
        for (var step = 6; step < 200; step++)
        {
            Assert.True(s.At(step) <= s.At(step - 1), $"step {step}");
        }
    }
}
