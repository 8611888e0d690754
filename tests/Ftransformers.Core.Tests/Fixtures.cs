namespace Ftransformers.Tests;

/// <summary>Paths of the shared reference fixtures, resolved from the repository root.</summary>
internal static class Fixtures
{
    private static readonly Lazy<string> SharedRoot = new(FindSharedRoot);

    public static string TinyV3 => Path.Combine(SharedRoot.Value, "fixtures", "tiny-v3");
    public static string TinyV3Fp8 => Path.Combine(SharedRoot.Value, "fixtures", "tiny-v3-fp8");
    public static string Tokenizer => Path.Combine(SharedRoot.Value, "fixtures", "deepseek-v3-tokenizer");

    // The fixtures live in ../shared beside the checkout (CI lays them out the same way);
    // a missing folder is a broken set-up, so fail loudly instead of skipping.
    private static string FindSharedRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Ftransformers.Core.sln")))
            {
                string shared = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared"));
                if (!Directory.Exists(Path.Combine(shared, "fixtures")))
                    throw new DirectoryNotFoundException($"Test fixtures not found at '{shared}/fixtures' (expected ../shared beside the repository).");
                return shared;
            }
        }
        throw new DirectoryNotFoundException($"Could not find the repository root (Ftransformers.Core.sln) above '{AppContext.BaseDirectory}'.");
    }
}
