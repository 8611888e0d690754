namespace Ftransformers.Tests;

/// <summary>Paths of the reference fixtures in <c>tests/fixtures</c>, resolved from the repository root.</summary>
internal static class Fixtures
{
    private static readonly Lazy<string> Root = new(FindFixturesRoot);

    public static string TinyV3 => Path.Combine(Root.Value, "tiny-v3");
    public static string TinyV3Fp8 => Path.Combine(Root.Value, "tiny-v3-fp8");
    public static string Tokenizer => Path.Combine(Root.Value, "deepseek-v3-tokenizer");

    // The fixtures are part of the repository, so a missing folder is a broken checkout: fail loudly, never skip.
    private static string FindFixturesRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Ftransformers.Core.sln")))
            {
                string fixtures = Path.Combine(dir.FullName, "tests", "fixtures");
                if (!Directory.Exists(fixtures))
                    throw new DirectoryNotFoundException($"Test fixtures not found at '{fixtures}' (they are part of the repository).");
                return fixtures;
            }
        }
        throw new DirectoryNotFoundException($"Could not find the repository root (Ftransformers.Core.sln) above '{AppContext.BaseDirectory}'.");
    }
}
