using System.Text.Json;
using Ftransformers.Tests.Support;
using Ftransformers.Tokenization;
using NUnit.Framework;

namespace Ftransformers.Tests.Tokenization;

[TestFixture]
public class DeepSeekV31ChatTemplateTests
{
    private const string Bos = "<｜begin▁of▁sentence｜>";

    [Test]
    public void AToolConversation_RendersAsTheV31TemplateDoes()
    {
        ChatMessage[] messages =
        [
            ChatMessage.System("Be brief."),
            ChatMessage.User("Weather in Oslo and Rome?"),
            ChatMessage.AssistantToolCalls(new ToolCall("get_weather", "{\"city\":\"Oslo\"}"), new ToolCall("get_weather", "{\"city\":\"Rome\"}")),
            ChatMessage.Tool("3C"),
            ChatMessage.Tool("18C"),
            ChatMessage.Assistant("Oslo 3C, Rome 18C."),
            ChatMessage.User("Thanks"),
            ChatMessage.Assistant("<think>polite</think>You're welcome."),
            ChatMessage.User("Bye"),
        ];
        string expected = Bos + "Be brief." +
            "<｜User｜>Weather in Oslo and Rome?<｜Assistant｜></think>" +
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\":\"Oslo\"}<｜tool▁call▁end｜>" +
            "<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\":\"Rome\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>" +
            "<｜tool▁output▁begin｜>3C<｜tool▁output▁end｜><｜tool▁output▁begin｜>18C<｜tool▁output▁end｜>" +
            "Oslo 3C, Rome 18C.<｜end▁of▁sentence｜>" +
            "<｜User｜>Thanks<｜Assistant｜></think>You're welcome.<｜end▁of▁sentence｜>" +   // earlier reasoning dropped
            "<｜User｜>Bye<｜Assistant｜></think>";
        Assert.That(DeepSeekV31ChatTemplate.Render(messages, addGenerationPrompt: true, Bos), Is.EqualTo(expected));
    }

    [Test]
    public void ThinkingOpensTheGenerationPrompt_AndToolOutputsGetNone()
    {
        Assert.That(DeepSeekV31ChatTemplate.Render([ChatMessage.User("Hi")], true, Bos, thinking: true), Is.EqualTo(Bos + "<｜User｜>Hi<｜Assistant｜><think>"));
        ChatMessage[] afterTool = [ChatMessage.User("x"), ChatMessage.AssistantToolCalls(new ToolCall("f", "{}")), ChatMessage.Tool("r")];
        Assert.That(DeepSeekV31ChatTemplate.Render(afterTool, true, Bos), Does.EndWith("<｜tool▁output▁begin｜>r<｜tool▁output▁end｜>"));
    }

    [Test]
    public void ToolsAreDescribedAfterTheSystemPrompt()
    {
        var tool = new ToolDefinition("get_weather", "The weather.", JsonDocument.Parse("""{"type": "object", "properties": {"city": {"type": "string"}}}""").RootElement);
        string prompt = DeepSeekV31ChatTemplate.Render([ChatMessage.System("S"), ChatMessage.User("Hi")], true, Bos, [tool]);
        Assert.That(prompt, Does.StartWith(Bos + "S\n\n## Tools\nYou have access to the following tools:\n\n### get_weather\nDescription: The weather.\n\n" +
            "Parameters: {\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}\n\n"));
        Assert.That(prompt, Does.EndWith("<｜User｜>Hi<｜Assistant｜></think>"));
    }

    [Test]
    public void TheTokenizerFolderSaysWhichTemplate()
    {
        Assert.That(DeepSeekTokenizer.Load(Fixtures.Tokenizer).ChatFormat, Is.EqualTo(ChatFormat.DeepSeekV3));

        // The same tokenizer with a V3.1-style template (a thinking switch and its is_last_user bookkeeping).
        using var folder = new TempDirectory();
        File.Copy(Path.Combine(Fixtures.Tokenizer, "tokenizer.json"), Path.Combine(folder.Path, "tokenizer.json"));
        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Tokenizer, "tokenizer_config.json")));
        var edited = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(config.RootElement.GetRawText())!;
        edited["chat_template"] = JsonSerializer.SerializeToElement("{% if not thinking is defined %}{% set thinking = false %}{% endif %}{% set ns = namespace(is_last_user=false) %}");
        File.WriteAllText(Path.Combine(folder.Path, "tokenizer_config.json"), JsonSerializer.Serialize(edited));
        Assert.That(DeepSeekTokenizer.Load(folder.Path).ChatFormat, Is.EqualTo(ChatFormat.DeepSeekV31));
    }
}
