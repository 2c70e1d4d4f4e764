using TorchSharp;
using TorchSharp.Modules;
using Updp.Models;
using Updp.Training;
using static TorchSharp.torch;

namespace Updp.Tests.Training;

public class FusedAdamWTests
{
    /// <summary>Two copies of a real model, one stepped by libtorch's AdamW and one by ours, on the same gradients.</summary>
    private static (ImageClassifier Ours, ImageClassifier Reference) Twins()
    {
        random.manual_seed(3);
        var ours = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto"));
        var reference = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto"));
        reference.load_state_dict(ours.state_dict());
        return (ours, reference);
    }

    private static void SetGradients(ImageClassifier model, int step)
    {
        // A private generator: xunit runs test classes in parallel, and other tests drawing from the global one
        // between the two models' calls would give the twins different gradients.
        using var generator = new Generator(100 + (ulong)step);
        foreach (var p in model.parameters())
        {
            // Larger and smaller than typical gradients, and exact zeros, so every branch of the update is exercised.
            var values = randn(p.shape, generator: generator) * (step % 2 == 0 ? 0.3 : 30);
            p.grad = values.where(rand(p.shape, generator: generator) > 0.1, zeros_like(p));
        }
    }

    [Fact]
    public void MatchesLibtorchAdamWWithAndWithoutWeightDecay()
    {
        var (ours, reference) = Twins();
        using var fused = FusedAdamW.ForModel(ours, 2e-3, 0.05);
        var decay = reference.parameters().Where(p => p.dim() > 1).ToList();
        var noDecay = reference.parameters().Where(p => p.dim() <= 1).ToList();
        using var torchAdamW = optim.AdamW(
            [new AdamW.ParamGroup(decay, lr: 2e-3, weight_decay: 0.05), new AdamW.ParamGroup(noDecay, lr: 2e-3, weight_decay: 0)],
            lr: 2e-3, weight_decay: 0.05);
        Assert.NotEmpty(noDecay);

        for (var step = 0; step < 6; step++)
        {
            // A changing learning rate, as the schedule sets it.
            var lr = 2e-3 * (1 - (0.1 * step));
            foreach (var g in fused.Groups)
            {
                g.LearningRate = lr;
            }
            foreach (var g in torchAdamW.ParamGroups)
            {
                g.LearningRate = lr;
            }
            SetGradients(ours, step);
            SetGradients(reference, step);
            fused.Step();
            torchAdamW.step();
        }

        var expected = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var moved = 0;
        foreach (var (name, p) in ours.named_parameters())
        {
            var r = expected[name];
            var scale = Math.Max(1e-3, r.abs().max().item<float>());
            var diff = (p - r).abs().max().item<float>();
            Assert.True(diff <= 2e-6 * scale, $"{name}: max |Δ| {diff} (scale {scale})");
            moved++;
        }
        Assert.Equal(expected.Count, moved);
        Assert.Equal(6, fused.StepCount);
    }

    [Fact]
    public void PlainLibtorchFallbackTakesTheSameStepsAsTheFusedPass()
    {
        var (fusedModel, plainModel) = Twins();
        using var fused = FusedAdamW.ForModel(fusedModel, 2e-3, 0.05);
        FusedAdamW plain;
        using (CpuFastPaths.UsePlainLibtorch())
        {
            plain = FusedAdamW.ForModel(plainModel, 2e-3, 0.05);
        }
        using var _ = plain;
        var count = fusedModel.parameters().Count();
        Assert.Equal(count, fused.FusedParameters);
        Assert.Equal(0, plain.FusedParameters);
        var initial = plainModel.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

        for (var step = 0; step < 8; step++)
        {
            var lr = 2e-3 * (1 - (0.1 * step));
            foreach (var g in fused.Groups.Concat(plain.Groups))
            {
                g.LearningRate = lr;
            }
            SetGradients(fusedModel, step);
            SetGradients(plainModel, step);
            fused.Step();
            plain.Step();
        }
        Assert.Equal(8, plain.StepCount);

        var expected = fusedModel.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in plainModel.named_parameters())
        {
            var r = expected[name];
            var scale = Math.Max(1e-3, r.abs().max().item<float>());
            var diff = (p - r).abs().max().item<float>();
            Assert.True(diff <= 2e-6 * scale, $"{name}: max |Δ| {diff} between the fallback and the fused pass (scale {scale})");
            Assert.True((p - initial[name]).abs().max().item<float>() > 1e-4, $"{name} did not move");
        }

        // The moments, as Save writes them, agree too.
        using var fusedState = new MemoryStream();
        using var plainState = new MemoryStream();
        fused.Save(fusedState);
        plain.Save(plainState);
        var dir = Directory.CreateTempSubdirectory("updp-adamw-");
        try
        {
            var (a, b) = (Path.Combine(dir.FullName, "fused"), Path.Combine(dir.FullName, "plain"));
            File.WriteAllBytes(a, fusedState.ToArray());
            File.WriteAllBytes(b, plainState.ToArray());
            var moments = Updp.Checkpoints.StateDict.Read(a);
            var plainMoments = Updp.Checkpoints.StateDict.Read(b);
            Assert.Equal(moments.Keys.Order(), plainMoments.Keys.Order());
            Assert.Equal(2 * count, moments.Count);
            foreach (var (key, m) in moments)
            {
                var scale = Math.Max(1e-6, m.abs().max().item<float>());
                var diff = (plainMoments[key] - m).abs().max().item<float>();
                Assert.True(diff <= 2e-6 * scale, $"{key}: max |Δ| {diff} (scale {scale})");
            }
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void PlainLibtorchFallbackMatchesLibtorchsAdamW()
    {
        var (ours, reference) = Twins();
        FusedAdamW plain;
        using (CpuFastPaths.UsePlainLibtorch())
        {
            plain = FusedAdamW.ForModel(ours, 2e-3, 0.05);
        }
        using var _ = plain;
        var decay = reference.parameters().Where(p => p.dim() > 1).ToList();
        var noDecay = reference.parameters().Where(p => p.dim() <= 1).ToList();
        using var torchAdamW = optim.AdamW(
            [new AdamW.ParamGroup(decay, lr: 2e-3, weight_decay: 0.05), new AdamW.ParamGroup(noDecay, lr: 2e-3, weight_decay: 0)],
            lr: 2e-3, weight_decay: 0.05);
        for (var step = 0; step < 6; step++)
        {
            SetGradients(ours, step);
            SetGradients(reference, step);
            plain.Step();
            torchAdamW.step();
        }
        var expected = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in ours.named_parameters())
        {
            var r = expected[name];
            var scale = Math.Max(1e-3, r.abs().max().item<float>());
            var diff = (p - r).abs().max().item<float>();
            Assert.True(diff <= 2e-6 * scale, $"{name}: max |Δ| {diff} (scale {scale})");
        }
    }

    [Fact]
    public void ActuallyChangesTheParameters()
    {
        var (ours, reference) = Twins();
        using var fused = FusedAdamW.ForModel(ours, 1e-2, 0.05);
        SetGradients(ours, 0);
        fused.Step();
        var before = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in ours.named_parameters())
        {
            Assert.True((p - before[name]).abs().max().item<float>() > 1e-4, $"{name} did not move");
        }
    }

    [Fact]
    public void ZeroGradDropsGradientsAndStepSkipsParametersWithout()
    {
        var (ours, reference) = Twins();
        using var fused = FusedAdamW.ForModel(ours, 1e-2, 0.05);
        SetGradients(ours, 0);
        fused.ZeroGrad();
        Assert.All(ours.parameters(), p => Assert.Null(p.grad));
        fused.Step();
        var before = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.All(ours.named_parameters(), p => Assert.True(p.parameter.eq(before[p.name]).all().item<bool>(), p.name));
    }

    [Fact]
    public void SaveAndLoadResumeTheSameTrajectory()
    {
        var dir = Directory.CreateTempSubdirectory("updp-adamw-");
        try
        {
            var (a, b) = Twins();
            using var first = FusedAdamW.ForModel(a, 1e-3, 0.05);
            for (var step = 0; step < 3; step++)
            {
                SetGradients(a, step);
                first.Step();
            }
            var path = Path.Combine(dir.FullName, "opt.safetensors");
            using (var stream = File.Create(path))
            {
                first.Save(stream);
            }
            b.load_state_dict(a.state_dict());
            using var second = FusedAdamW.ForModel(b, 1e-3, 0.05);
            second.Load(path);
            Assert.Equal(3, second.StepCount);
            SetGradients(a, 3);
            SetGradients(b, 3);
            first.Step();
            second.Step();
            var pa = a.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            Assert.All(b.named_parameters(), p => Assert.True(p.parameter.eq(pa[p.name]).all().item<bool>(), p.name));
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void LoadRejectsAStateForOtherParametersNamingTheKey()
    {
        var dir = Directory.CreateTempSubdirectory("updp-adamw-");
        try
        {
            var path = Path.Combine(dir.FullName, "opt.safetensors");
            using (var femto = ModelRegistry.Create(ModelConfig.SmallInput("convnext_femto")))
            using (var opt = FusedAdamW.ForModel(femto, 1e-3, 0.05))
            using (var stream = File.Create(path))
            {
                opt.Save(stream);
            }
            using var atto = ModelRegistry.Create(ModelConfig.SmallInput("convnext_atto"));
            using var target = FusedAdamW.ForModel(atto, 1e-3, 0.05);
            var e = Assert.Throws<InvalidDataException>(() => target.Load(path));
            Assert.Contains(path, e.Message, StringComparison.Ordinal);
            Assert.Contains("exp_avg", e.Message, StringComparison.Ordinal);
            Assert.Contains("expected", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(true);
        }
    }
}
