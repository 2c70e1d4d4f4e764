using System.Runtime.CompilerServices;

namespace Updp.Tests;

internal static class TestSetup
{
    /// <summary>
    /// xunit runs test classes in parallel, one per core; one libtorch thread each keeps them from
    /// oversubscribing the two cores (OpenMP threads spin while they wait).
    /// </summary>
    [ModuleInitializer]
    internal static void OneTorchThreadPerTest()
    {
        TorchSharp.torch.set_num_threads(1);
        // Tests build modules without the registry too; the library checks the kernels only there.
        ConvolutionKernels.Check();
    }
}
