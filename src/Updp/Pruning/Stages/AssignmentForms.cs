using TorchSharp;
using Updp.Models;
using Updp.Pruning.Blocks;
using static TorchSharp.torch;

namespace Updp.Pruning;

/// <summary>
/// Gives a supernet's candidate blocks the forms of one <see cref="BlockAssignment"/> at a time, for
/// a supernet step or a scored assignment (docs/METHOD.md#mixed): merged blocks run their pruned
/// form at λ=1, the other candidates at λ=0, and dropped blocks are swapped for their dropped form
/// (<see cref="IBlockRule.Drop"/>, built once per block and sharing its tensors) until the next
/// assignment. The pruned modules stay the model's: they are swapped back in, never rebuilt, so the
/// optimizer keeps training the same tensors.
/// </summary>
internal sealed class AssignmentForms
{
    private readonly ImageClassifier _model;
    private readonly IReadOnlyList<int> _candidates;
    private readonly Dictionary<int, nn.Module<Tensor, Tensor>> _dropped = [];
    private readonly Dictionary<int, nn.Module<Tensor, Tensor>> _swappedOut = [];

    /// <summary>Prunes every candidate (λ=0) and builds the dropped form of each droppable one.</summary>
    /// <exception cref="ArgumentException">A block of <paramref name="droppable"/> cannot be dropped.</exception>
    public AssignmentForms(ImageClassifier model, IReadOnlyList<int> candidates, IEnumerable<int> droppable)
    {
        _model = model;
        _candidates = candidates;
        StageData.SetLambdas(model, candidates, new HashSet<int>());
        foreach (var index in droppable)
        {
            _dropped[index] = model.DroppedForm(index);
        }
    }

    /// <summary>The candidates this can drop.</summary>
    public IReadOnlyCollection<int> Droppable => _dropped.Keys;

    /// <summary>Gives the candidates the forms of <paramref name="assignment"/> (blocks outside the candidates are left alone).</summary>
    /// <exception cref="ArgumentException">A dropped block is not one of <see cref="Droppable"/>.</exception>
    public void Apply(BlockAssignment assignment)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        if (assignment.Dropped.FirstOrDefault(i => !_dropped.ContainsKey(i), -1) is var stray and >= 0)
        {
            throw new ArgumentException($"block {stray} is not a droppable candidate (droppable: {string.Join(",", _dropped.Keys.Order())})", nameof(assignment));
        }
        Restore();
        StageData.SetLambdas(_model, _candidates, assignment.Merged.ToHashSet());
        foreach (var index in assignment.Dropped)
        {
            _swappedOut[index] = _model.ReplaceBlock(index, _dropped[index]);
        }
    }

    /// <summary>Puts every dropped block's pruned form back (λ as the last assignment left it).</summary>
    public void Restore()
    {
        foreach (var (index, pruned) in _swappedOut)
        {
            _model.ReplaceBlock(index, pruned);
        }
        _swappedOut.Clear();
    }
}
