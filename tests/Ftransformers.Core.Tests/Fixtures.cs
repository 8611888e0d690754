namespace Ftransformers.Tests;

/// <summary>Paths of the reference fixtures in <c>tests/fixtures</c>, resolved from the repository root.</summary>
internal static class Fixtures
{
    private static readonly Lazy<string> RepositoryRootPath = new(FindRepositoryRoot);
    private static readonly Lazy<string> Root = new(FindFixturesRoot);

    /// <summary>The checkout's root folder (where Ftransformers.Core.sln is).</summary>
    public static string RepositoryRoot => RepositoryRootPath.Value;

    public static string TinyV3 => Path.Combine(Root.Value, "tiny-v3");
    public static string TinyV3Fp8 => Path.Combine(Root.Value, "tiny-v3-fp8");
    public static string Tokenizer => Path.Combine(Root.Value, "deepseek-v3-tokenizer");

    // The fixtures are part of the repository, so a missing folder is a broken checkout: fail loudly, never skip.
    private static string FindFixturesRoot()
    {
        string fixtures = Path.Combine(RepositoryRoot, "tests", "fixtures");
        return Directory.Exists(fixtures) ? fixtures
            : throw new DirectoryNotFoundException($"Test fixtures not found at '{fixtures}' (they are part of the repository).");
    }

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Ftransformers.Core.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException($"Could not find the repository root (Ftransformers.Core.sln) above '{AppContext.BaseDirectory}'.");
    }
}
