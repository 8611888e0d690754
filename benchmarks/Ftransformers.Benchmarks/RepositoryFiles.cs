namespace Ftransformers.Benchmarks;

/// <summary>Files of the repository the benchmarks read (the fixtures).</summary>
internal static class RepositoryFiles
{
    /// <summary>The DeepSeek-V3 tokenizer fixture.</summary>
    public static string Tokenizer => Path.Combine(Root(), "tests", "fixtures", "deepseek-v3-tokenizer");

    // BenchmarkDotNet runs the benchmark from a generated project under bin/, inside the repository.
    private static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Ftransformers.Core.sln")))
                return dir.FullName;
        throw new DirectoryNotFoundException($"Could not find the repository root (Ftransformers.Core.sln) above '{AppContext.BaseDirectory}'.");
    }
}
