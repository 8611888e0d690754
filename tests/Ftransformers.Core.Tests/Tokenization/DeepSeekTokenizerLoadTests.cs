using System.Text.Json.Nodes;
using Ftransformers.Tokenization;
using Ftransformers.Tests.Support;
using NUnit.Framework;

namespace Ftransformers.Tests.Tokenization;

[TestFixture]
public class DeepSeekTokenizerLoadTests : TempDirectoryTest
{
    private string TokenizerJson => Path.Combine(TempPath, "tokenizer.json");
    private string ConfigJson => Path.Combine(TempPath, "tokenizer_config.json");

    private static JsonNode ReadFixture(string name) => JsonNode.Parse(File.ReadAllText(Path.Combine(Fixtures.Tokenizer, name)))!;

    private void WriteFixturesWith(Action<JsonNode>? editTokenizer = null, Action<JsonNode>? editConfig = null)
    {
        JsonNode tokenizer = ReadFixture("tokenizer.json");
        editTokenizer?.Invoke(tokenizer);
        File.WriteAllText(TokenizerJson, tokenizer.ToJsonString());
        JsonNode config = ReadFixture("tokenizer_config.json");
        editConfig?.Invoke(config);
        File.WriteAllText(ConfigJson, config.ToJsonString());
    }

    [Test]
    public void LoadsACopyOfTheFixtureFolder()
    {
        WriteFixturesWith();

        DeepSeekTokenizer tokenizer = DeepSeekTokenizer.Load(TempPath);

        Assert.That(tokenizer.Encode("Hello world!"), Is.EqualTo(new[] { 19923, 2058, 3 }));
    }

    [Test]
    public void MissingTokenizerJsonIsReportedWithItsPath()
    {
        var error = Assert.Throws<FileNotFoundException>(() => DeepSeekTokenizer.Load(TempPath));

        Assert.That(error!.Message, Does.Contain(TokenizerJson));
    }

    [Test]
    public void MissingTokenizerConfigIsReportedWithItsPath()
    {
        WriteFixturesWith();
        File.Delete(ConfigJson);

        var error = Assert.Throws<FileNotFoundException>(() => DeepSeekTokenizer.Load(TempPath));

        Assert.That(error!.Message, Does.Contain(ConfigJson));
    }

    [Test]
    public void InvalidJsonIsReportedWithThePath()
    {
        File.WriteAllText(TokenizerJson, "{ \"model\": ");

        var error = Assert.Throws<InvalidDataException>(() => DeepSeekTokenizer.Load(TempPath));

        Assert.That(error!.Message, Does.Contain(TokenizerJson).And.Contain("not valid JSON"));
    }

    [Test]
    public void MissingMergesAreReportedWithFileAndField()
    {
        WriteFixturesWith(editTokenizer: t => t["model"]!.AsObject().Remove("merges"));

        var error = Assert.Throws<InvalidDataException>(() => DeepSeekTokenizer.Load(TempPath));

        Assert.That(error!.Message, Does.Contain(TokenizerJson).And.Contain("'model.merges'"));
    }

    [Test]
    public void MissingBosTokenIsReportedWithFileAndField()
    {
        WriteFixturesWith(editConfig: c => c.AsObject().Remove("bos_token"));

        var error = Assert.Throws<InvalidDataException>(() => DeepSeekTokenizer.Load(TempPath));

        Assert.That(error!.Message, Does.Contain(ConfigJson).And.Contain("'bos_token'"));
    }

    [Test]
    public void ABosTokenMissingFromTheVocabularyIsReported()
    {
        WriteFixturesWith(editConfig: c => c["bos_token"] = "<s>");

        var error = Assert.Throws<InvalidDataException>(() => DeepSeekTokenizer.Load(TempPath));

        Assert.That(error!.Message, Does.Contain(ConfigJson).And.Contain("'bos_token'").And.Contain("<s>"));
    }

    [Test]
    public void AForeignPreTokenizerIsRefused()
    {
        WriteFixturesWith(editTokenizer: t => t["pre_tokenizer"] = JsonNode.Parse("""{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}"""));

        var error = Assert.Throws<InvalidDataException>(() => DeepSeekTokenizer.Load(TempPath));

        Assert.That(error!.Message, Does.Contain(TokenizerJson).And.Contain("'pre_tokenizer'"));
    }

    [Test]
    public void AMergeOfUnknownTokensIsReportedWithTheFile()
    {
        WriteFixturesWith(editTokenizer: t => t["model"]!["merges"]!.AsArray().Add("qqqq zzzz"));

        var error = Assert.Throws<InvalidDataException>(() => DeepSeekTokenizer.Load(TempPath));

        Assert.That(error!.Message, Does.Contain(TokenizerJson).And.Contain("qqqq"));
    }
}
