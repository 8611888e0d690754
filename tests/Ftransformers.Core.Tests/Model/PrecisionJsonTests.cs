using System.Text.Json.Nodes;
using Ftransformers.Model;
using NUnit.Framework;

namespace Ftransformers.Tests.Model;

[TestFixture]
public class PrecisionJsonTests
{
    [Test]
    public void Q8_0Blocks_RoundTripThroughTheQuantizationConfig()
    {
        Precision q8 = Precision.F32 with { Attention = WeightFormat.W8A8, LmHead = WeightFormat.W8A8, Int8BlockSize = 32 };
        JsonObject json = q8.ToJson();
        Assert.That(json["attention"]!.GetValue<string>(), Is.EqualTo("q8_0"));
        Assert.That(Precision.FromJson(json, "config.json"), Is.EqualTo(q8));
        Assert.That(Precision.FromJson(Precision.W8A8Int4.ToJson(), "config.json"), Is.EqualTo(Precision.W8A8Int4), "per-row W8A8 stays per row");
    }

    [Test]
    public void Q4KExperts_RoundTripThroughTheQuantizationConfig_AndTheirPresetName()
    {
        JsonObject json = Precision.W8A8Q4K.ToJson();
        Assert.That(json["routed_experts"]!.GetValue<string>(), Is.EqualTo("q4_k"));
        Assert.That(Precision.FromJson(json, "config.json"), Is.EqualTo(Precision.W8A8Q4K));
        Assert.That(Precision.Parse("w8a8-q4_k"), Is.EqualTo(Precision.W8A8Q4K));
        Assert.That(Precision.W8A8Q4K.IsQuantized, Is.True);
    }

    [Test]
    public void AConfigMixingPerRowAndPerBlockInt8_IsRefused()
    {
        JsonObject json = Precision.W8A8Int4.ToJson();
        json["lm_head"] = "q8_0";
        var error = Assert.Throws<InvalidDataException>(() => Precision.FromJson(json, "config.json"));
        Assert.That(error!.Message, Does.Contain("mixes w8a8").And.Contain("config.json"));
    }
}
