using System.Text.Json.Nodes;
using Ftransformers.Model;
using NUnit.Framework;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class DeepSeekV3ConfigTests
{
    private static string FixtureJson => File.ReadAllText(Path.Combine(Fixtures.TinyV3, "config.json"));

    private static string Edit(Action<JsonObject> edit)
    {
        var root = JsonNode.Parse(FixtureJson)!.AsObject();
        edit(root);
        return root.ToJsonString();
    }

    [Test]
    public void FixtureConfig_ReadsEveryField()
    {
        DeepSeekV3Config c = DeepSeekV3Config.Parse(FixtureJson);
        Assert.Multiple(() =>
        {
            Assert.That(c.QLoraRank, Is.EqualTo(64));
            Assert.That(c.KvLoraRank, Is.EqualTo(32));
            Assert.That(c.RopeScaling, Is.EqualTo(new RopeScaling(4, 64, 32, 1, 1, 1)));
            Assert.That(c.NGroup, Is.EqualTo(4));
            Assert.That(c.TopkGroup, Is.EqualTo(2));
            Assert.That(c.RoutedScalingFactor, Is.EqualTo(2.5));
            Assert.That(c.EosTokenIds, Is.EqualTo(new[] { 1 }));
            Assert.That(c.IsMoeLayer(0), Is.False);
            Assert.That(c.IsMoeLayer(1), Is.True);
        });
    }

    [Test]
    public void NullQLoraRank_AndNoRopeScaling_AreAccepted()
    {
        DeepSeekV3Config c = DeepSeekV3Config.Parse(Edit(r => { r["q_lora_rank"] = null; r.Remove("rope_scaling"); }));
        Assert.That(c.QLoraRank, Is.Null);
        Assert.That(c.RopeScaling, Is.Null);
    }

    [Test]
    public void ToJson_RoundTrips()
    {
        DeepSeekV3Config c = DeepSeekV3Config.Parse(FixtureJson);
        Assert.That(DeepSeekV3Config.Parse(c.ToJson()), Is.EqualTo(c).Using<DeepSeekV3Config>((a, b) => a.ToJson() == b.ToJson()));
    }

    [Test]
    public void UnsupportedModelType_IsNamed()
    {
        var e = Assert.Throws<InvalidDataException>(() => DeepSeekV3Config.Parse(Edit(r => r["model_type"] = "llama"), "cfg.json"));
        Assert.That(e!.Message, Does.Contain("cfg.json").And.Contain("'llama'"));
    }

    [TestCase("hidden_size")]
    [TestCase("kv_lora_rank")]
    [TestCase("model_type")]
    public void MissingRequiredField_IsNamed(string field)
    {
        var e = Assert.Throws<InvalidDataException>(() => DeepSeekV3Config.Parse(Edit(r => r.Remove(field))));
        Assert.That(e!.Message, Does.Contain($"'{field}'"));
    }

    [Test]
    public void WrongFieldType_IsNamed()
    {
        var e = Assert.Throws<InvalidDataException>(() => DeepSeekV3Config.Parse(Edit(r => r["num_attention_heads"] = "four")));
        Assert.That(e!.Message, Does.Contain("'num_attention_heads'"));
    }

    [Test]
    public void InconsistentGrouping_IsReported()
    {
        var e = Assert.Throws<InvalidDataException>(() => DeepSeekV3Config.Parse(Edit(r => r["n_group"] = 3)));
        Assert.That(e!.Message, Does.Contain("n_group"));
    }

    [Test]
    public void UnknownRopeScalingType_IsReported()
    {
        var e = Assert.Throws<InvalidDataException>(() => DeepSeekV3Config.Parse(Edit(r => r["rope_scaling"]!["type"] = "dynamic")));
        Assert.That(e!.Message, Does.Contain("'dynamic'"));
    }

    [Test]
    public void InvalidJson_IsReported()
    {
        Assert.That(Assert.Throws<InvalidDataException>(() => DeepSeekV3Config.Parse("{", "x/config.json"))!.Message, Does.Contain("x/config.json"));
    }

    [Test]
    public void MissingConfigFile_NamesTheFolder()
    {
        var e = Assert.Throws<FileNotFoundException>(() => DeepSeekV3Config.Load("/nonexistent-model"));
        Assert.That(e!.Message, Does.Contain("/nonexistent-model"));
    }
}
