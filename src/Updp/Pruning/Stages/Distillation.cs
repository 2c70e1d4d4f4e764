using TorchSharp;
using Updp.Checkpoints;
using Updp.Data;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>
/// Knowledge distillation from a teacher, usually the baseline the pruning started from (docs/METHOD.md#distillation):
/// loss = (1−α)·CE(student, labels) + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T)).
/// The defaults (α = 0.5, T = 1) are our choice, not yet backed by an ablation: at T = 1 the soft
/// term's gradients have the scale of the cross-entropy's, and α = 0.5 weighs the two alike.
/// </summary>
public sealed record DistillationOptions
{
    /// <summary>The teacher's checkpoint (an Updp checkpoint with sidecar; pruned ones load too).</summary>
    public required string Teacher { get; init; }

    /// <summary>α ∈ [0,1], the weight of the distillation term; 0 is plain cross-entropy.</summary>
    public double Alpha { get; init; } = 0.5;

    /// <summary>T &gt; 0, the softmax temperature of both teacher and student in the distillation term.</summary>
    public double Temperature { get; init; } = 1;
}

/// <summary>The distillation loss of <see cref="DistillationOptions"/>.</summary>
public static class Distillation
{
    /// <summary>
    /// (1−α)·CE(<paramref name="student"/>, <paramref name="labels"/>) + α·T²·KL(p_t ‖ p_s) with
    /// p = softmax(logits/T), the KL divergence summed over classes and averaged over the batch.
    /// <paramref name="teacher"/> is treated as a constant (no gradient flows into it).
    /// </summary>
    /// <param name="labelSmoothing">Label smoothing of the cross-entropy term.</param>
    public static Tensor Loss(Tensor student, Tensor teacher, Tensor labels, double alpha, double temperature, double labelSmoothing = 0)
    {
        Check(alpha, temperature);
        var ce = nn.functional.cross_entropy(student, labels, label_smoothing: labelSmoothing);
        if (alpha == 0)
        {
            return ce;
        }
        var logStudent = nn.functional.log_softmax(student.DividedBy(temperature), 1);
        var logTeacher = nn.functional.log_softmax(teacher.detach().DividedBy(temperature), 1);
        var kl = (logTeacher.exp() * (logTeacher - logStudent)).sum(1).mean();
        return ce.Times(1 - alpha).Plus(kl.Times(alpha * temperature * temperature));
    }

    internal static void Check(double alpha, double temperature)
    {
        if (alpha is not (>= 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "the distillation weight α must lie in [0, 1]");
        }
        if (!(temperature > 0) || double.IsInfinity(temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "the distillation temperature must be positive and finite");
        }
    }
}

/// <summary>A teacher model that supplies a training run's distillation loss.</summary>
internal sealed class Teacher : IDisposable
{
    private readonly ImageClassifier _model;
    private readonly CheckpointMeta? _meta;
    private readonly string _path;
    private readonly bool _owned;

    private Teacher(ImageClassifier model, CheckpointMeta? meta, string path, bool owned)
    {
        _model = model;
        _meta = meta;
        _path = path;
        _owned = owned;
    }

    /// <summary>
    /// Loads the teacher of <paramref name="options"/> (in eval mode) onto the student's device and
    /// checks that it fits the student (<see cref="Check"/>).
    /// </summary>
    public static Teacher Load(DistillationOptions options, ImageClassifier student, Preprocessing preprocessing)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(student);
        Distillation.Check(options.Alpha, options.Temperature);
        var loaded = Checkpoint.Load(options.Teacher, options: PrunedModels.LoadOptionsOn(Devices.Of(student)));
        var teacher = new Teacher(loaded.Model, loaded.Meta, options.Teacher, owned: true);
        try
        {
            teacher.Check(student, preprocessing);
            return teacher;
        }
        catch
        {
            teacher.Dispose();
            throw;
        }
    }

    /// <summary>A teacher on a model that is already loaded (in eval mode) and stays its owner's.</summary>
    public static Teacher Of(ImageClassifier model, CheckpointMeta? meta, DistillationOptions options, ImageClassifier student, Preprocessing preprocessing)
    {
        ArgumentNullException.ThrowIfNull(options);
        Distillation.Check(options.Alpha, options.Temperature);
        var teacher = new Teacher(model, meta, options.Teacher, owned: false);
        teacher.Check(student, preprocessing);
        return teacher;
    }

    /// <summary>Checks that the teacher fits the student: same classes and input channels, and, when its sidecar says so, the same input preprocessing.</summary>
    public void Check(ImageClassifier student, Preprocessing preprocessing)
    {
        if (_model.Config.NumClasses != student.Config.NumClasses || _model.Config.InChans != student.Config.InChans)
        {
            throw new ArgumentException(
                $"the teacher '{_path}' has {_model.Config.NumClasses} classes and {_model.Config.InChans} input channels; " +
                $"the student has {student.Config.NumClasses} and {student.Config.InChans}");
        }
        if (_meta?.Preprocessing is { } taught && taught != preprocessing)
        {
            throw new ArgumentException($"the teacher '{_path}' was trained on differently prepared images ({taught}) than this run uses ({preprocessing})");
        }
    }

    /// <summary>A <see cref="Updp.Training.Trainer.Loss"/>: the teacher runs in eval mode without gradients.</summary>
    public Func<Tensor, Tensor, Tensor, Tensor> Loss(DistillationOptions options, double labelSmoothing)
    {
        Distillation.Check(options.Alpha, options.Temperature);
        return (logits, images, labels) =>
        {
            Tensor teacher;
            using (no_grad())
            {
                teacher = _model.call(images);
            }
            return Distillation.Loss(logits, teacher, labels, options.Alpha, options.Temperature, labelSmoothing);
        };
    }

    public void Dispose()
    {
        if (_owned)
        {
            _model.Dispose();
        }
    }
}
