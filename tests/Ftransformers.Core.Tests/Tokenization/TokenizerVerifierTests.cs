using System.Text.Json.Nodes;
using Ftransformers.Tokenization;
using Ftransformers.Tests.Support;
using NUnit.Framework;

namespace Ftransformers.Tests.Tokenization;

[TestFixture]
public class TokenizerVerifierTests : TempDirectoryTest
{
    /// <summary>Writes a copy of the golden file changed by <paramref name="edit"/> and returns its path.</summary>
    internal static string WriteAlteredGolden(string directory, Action<JsonNode> edit)
    {
        JsonNode golden = JsonNode.Parse(File.ReadAllText(GoldenEncodings.FilePath))!;
        edit(golden);
        string path = Path.Combine(directory, "golden_encodings.json");
        File.WriteAllText(path, golden.ToJsonString());
        return path;
    }

    [Test]
    public void TheFixtureTokenizerPassesItsGoldenFile()
    {
        TokenizerVerificationResult result = TokenizerVerifier.Verify(Fixtures.Tokenizer, GoldenEncodings.FilePath);

        Assert.That(result.Cases, Is.EqualTo(12));
        Assert.That(result.Mismatches, Is.Zero);
        Assert.That(result.ChatTemplateMatch, Is.True);
        Assert.That(result.MismatchDescriptions, Is.Empty);
        Assert.That(result.Pass, Is.True);
    }

    [Test]
    public void AnAlteredIdIsCountedAndDescribed()
    {
        string golden = WriteAlteredGolden(TempPath, g => g["cases"]![0]!["ids"]![1] = 2059);

        TokenizerVerificationResult result = TokenizerVerifier.Verify(Fixtures.Tokenizer, golden);

        Assert.That(result.Pass, Is.False);
        Assert.That(result.Mismatches, Is.EqualTo(1));
        Assert.That(result.ChatTemplateMatch, Is.True);
        Assert.That(result.MismatchDescriptions, Has.Some.Contains("case 0").And.Some.Contains("position 1: expected 2059, got 2058"));
    }

    [Test]
    public void AnAlteredChatTextFailsTheChatTemplateCheck()
    {
        string golden = WriteAlteredGolden(TempPath, g => g["chat_template"]!["text"] = g["chat_template"]!["text"]!.GetValue<string>().Replace("Paris.", "Lyon."));

        TokenizerVerificationResult result = TokenizerVerifier.Verify(Fixtures.Tokenizer, golden);

        Assert.That(result.Pass, Is.False);
        Assert.That(result.Mismatches, Is.Zero);
        Assert.That(result.ChatTemplateMatch, Is.False);
        Assert.That(result.MismatchDescriptions, Has.Some.Contains("chat_template text"));
    }

    [Test]
    public void AMissingGoldenFileIsReportedWithItsPath()
    {
        string missing = Path.Combine(TempPath, "none.json");

        var error = Assert.Throws<FileNotFoundException>(() => TokenizerVerifier.Verify(Fixtures.Tokenizer, missing));

        Assert.That(error!.Message, Does.Contain(missing));
    }

    [Test]
    public void AGoldenFileWithoutCasesIsReportedWithTheField()
    {
        string golden = WriteAlteredGolden(TempPath, g => g.AsObject().Remove("cases"));

        var error = Assert.Throws<InvalidDataException>(() => TokenizerVerifier.Verify(Fixtures.Tokenizer, golden));

        Assert.That(error!.Message, Does.Contain(golden).And.Contain("'cases'"));
    }
}
