using System.Runtime.InteropServices;
using Ftransformers.Kernels;
using NUnit.Framework;

namespace Ftransformers.Tests.Kernels;

/// <summary>
/// Which path the integer kernels take. CI's ARM64 runs name the path each emulated CPU must get
/// (FTRANSFORMERS_EXPECT_KERNEL_PATH), so that a fallback cannot pass for the fast path.
/// </summary>
[TestFixture]
public class KernelDispatchTests
{
    [Test]
    public void ActivePath_IsTheOneTheRunExpects()
    {
        string? expected = Environment.GetEnvironmentVariable("FTRANSFORMERS_EXPECT_KERNEL_PATH");
        if (string.IsNullOrEmpty(expected))
            Assert.Ignore($"FTRANSFORMERS_EXPECT_KERNEL_PATH is not set; on {RuntimeInformation.ProcessArchitecture} dispatch chose {Int8Dot.ActivePath}.");
        TestContext.Out.WriteLine($"{RuntimeInformation.ProcessArchitecture}: INT8 path {Int8Dot.ActivePath}, INT4 path {Int4Dot.ActivePath}");
        Assert.That(Int8Dot.ActivePath.ToString(), Is.EqualTo(expected));
        Assert.That(Int4Dot.ActivePath.ToString(), Is.EqualTo(expected));
    }
}
