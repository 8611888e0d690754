using NUnit.Framework;

namespace Ftransformers.Tests.Support;

/// <summary>Base of test fixtures that give each test a fresh scratch folder.</summary>
public abstract class TempDirectoryTest
{
    private TempDirectory? _temp;

    /// <summary>This test's scratch folder.</summary>
    protected string TempPath => _temp!.Path;

    [SetUp]
    public void CreateTempDirectory() => _temp = new TempDirectory();

    [TearDown]
    public void DeleteTempDirectory() => _temp?.Dispose();
}
