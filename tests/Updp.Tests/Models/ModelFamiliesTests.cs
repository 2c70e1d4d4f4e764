using Updp.Checkpoints;
using Updp.Export;
using Updp.Models;
using Updp.Pruning.Blocks;

namespace Updp.Tests.Models;

/// <summary>Families are found by reflection, and each registers every capability the layers ask for.</summary>
public class ModelFamiliesTests
{
    [Fact]
    public void EveryFamilyIsFoundOnceInOrdinalNameOrder()
    {
        var names = ModelFamilies.All.Select(f => f.Name).ToList();
        Assert.Equal(["convnext", "deit", "mobilenetv2", "resnet"], names);
        Assert.Same(ModelFamilies.All, ModelFamilies.All);
    }

    [Fact]
    public void TheRegistryHoldsExactlyTheFamiliesVariants()
    {
        var fromFamilies = ModelFamilies.All.SelectMany(f => f.Variants.Select(v => (f.Name, v.Name, v.Family))).ToList();
        Assert.All(fromFamilies, v => Assert.Equal(v.Item1, v.Family));
        Assert.Equal(fromFamilies.Select(v => v.Item2).Order(StringComparer.Ordinal), ModelRegistry.All.Select(v => v.Name).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void EveryFamilyIsPrunableExportableAndLoadsForeignStateDicts()
    {
        Assert.All(ModelFamilies.All, f =>
        {
            Assert.IsAssignableFrom<IPrunableFamily>(f);
            Assert.IsAssignableFrom<IExportableFamily>(f);
            Assert.IsAssignableFrom<ICheckpointFamily>(f);
            Assert.Same(((ICheckpointFamily)f).StateDictAdapter, StateDictAdapters.Find(f.Name));
        });
    }

    [Fact]
    public void EveryFormOfEveryBlockHasAnOnnxEmitter()
    {
        Assert.All(ModelFamilies.All, f =>
        {
            var emitted = ((IExportableFamily)f).OnnxEmitters.SelectMany(e => e.ModuleTypes).ToHashSet();
            var blockTypes = ((IPrunableFamily)f).BlockRules.SelectMany(r => r.BlockTypes).ToList();
            Assert.NotEmpty(blockTypes);
            Assert.All(blockTypes, t => Assert.Contains(t, emitted));
        });
    }

    [Fact]
    public void DiscoverFindsConcreteFamiliesAndOrdersThemByName()
    {
        var found = ModelFamilies.Discover([typeof(ZetaFamily), typeof(string), typeof(AbstractFamily), typeof(AlphaFamily), typeof(GenericFamily<>)]);
        Assert.Equal(["alpha", "zeta"], found.Select(f => f.Name));
        Assert.IsType<AlphaFamily>(found[0]);
    }

    [Fact]
    public void DiscoverRefusesTwoFamiliesWithOneName()
    {
        var e = Assert.Throws<InvalidOperationException>(() => ModelFamilies.Discover([typeof(AlphaFamily), typeof(OtherAlphaFamily)]));
        Assert.Contains("'alpha'", e.Message);
    }

    [Fact]
    public void DiscoverRefusesAFamilyWithoutParameterlessConstructor()
    {
        var e = Assert.Throws<InvalidOperationException>(() => ModelFamilies.Discover([typeof(FamilyWithArguments)]));
        Assert.Contains(nameof(FamilyWithArguments), e.Message);
    }

    private abstract class AbstractFamily : IModelFamily
    {
        public virtual string Name => "abstract";

        public string DisplayName => Name;

        public bool HasLayerScale => false;

        public IEnumerable<ModelVariant> Variants => [];
    }

    private sealed class AlphaFamily : AbstractFamily
    {
        public override string Name => "alpha";
    }

    private sealed class OtherAlphaFamily : AbstractFamily
    {
        public override string Name => "alpha";
    }

    private sealed class ZetaFamily : AbstractFamily
    {
        private ZetaFamily()
        {
        }

        public override string Name => "zeta";
    }

    private sealed class GenericFamily<T> : AbstractFamily
    {
        public override string Name => typeof(T).Name;
    }

    private sealed class FamilyWithArguments(string name) : AbstractFamily
    {
        public override string Name => name;
    }
}
