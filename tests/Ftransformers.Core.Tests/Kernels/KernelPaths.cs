using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

/// <summary>Which kernel paths this CPU executes; tests run each and name the ones it cannot.</summary>
internal static class KernelPaths
{
    /// <summary>The paths of the per-row kernels (<see cref="Int8Dot"/>, <see cref="Int4Dot"/>).</summary>
    public static readonly KernelPath[] All = [KernelPath.Scalar, KernelPath.Vector128, KernelPath.AdvSimd, KernelPath.Dp, KernelPath.Avx2];

    public static bool IsSupported(KernelPath path) => path switch
    {
        KernelPath.Scalar => true,
        KernelPath.Vector128 => Vector128.IsHardwareAccelerated,
        KernelPath.AdvSimd => AdvSimd.IsSupported,
        KernelPath.Dp => Dp.IsSupported,
        KernelPath.Avx2 => Avx2.IsSupported,
        KernelPath.AvxVnni => AvxVnni.IsSupported,
        KernelPath.Avx512 => Avx512BW.IsSupported,
        _ => throw new ArgumentOutOfRangeException(nameof(path)),
    };

    /// <summary>Stops a test of a path this CPU cannot run, saying so: it is reported as skipped with the reason, not passed.</summary>
    public static void Require(KernelPath path)
    {
        if (!IsSupported(path))
            Assert.Ignore($"{path} is not supported on this CPU ({System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}).");
    }

    /// <summary>The fastest path this CPU supports, which dispatch must choose.</summary>
    public static KernelPath Fastest => new[] { KernelPath.Avx2, KernelPath.Dp, KernelPath.AdvSimd, KernelPath.Vector128 }.FirstOrDefault(IsSupported, KernelPath.Scalar);
}
