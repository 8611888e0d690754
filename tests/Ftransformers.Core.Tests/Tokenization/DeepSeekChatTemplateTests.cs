using Ftransformers.Tokenization;
using NUnit.Framework;

namespace Ftransformers.Tests.Tokenization;

// Expected prompts are written by hand from the Jinja chat_template of tokenizer_config.json.
[TestFixture]
public class DeepSeekChatTemplateTests
{
    private const string Bos = "<｜begin▁of▁sentence｜>";

    [Test]
    public void RendersTheGoldenConversationToTheGoldenTextAndIds()
    {
        GoldenEncodings.ChatCase golden = GoldenEncodings.Chat();
        List<ChatMessage> messages = golden.Messages.EnumerateArray()
            .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()))
            .ToList();
        DeepSeekTokenizer tokenizer = SharedTokenizer.Instance;

        string text = DeepSeekChatTemplate.Render(messages, golden.AddGenerationPrompt, tokenizer.BosToken);

        Assert.That(text, Is.EqualTo(golden.Text));
        Assert.That(tokenizer.Encode(text), Is.EqualTo(golden.Ids));
    }

    [Test]
    public void JoinsAllSystemPromptsAfterBosWhereverTheyAppear()
    {
        ChatMessage[] messages =
        [
            ChatMessage.System("A"), ChatMessage.User("Hi"), ChatMessage.System("B"), ChatMessage.Assistant("Hello"),
        ];

        string text = DeepSeekChatTemplate.Render(messages, addGenerationPrompt: false, Bos);

        Assert.That(text, Is.EqualTo(Bos + "A\n\nB<｜User｜>Hi<｜Assistant｜>Hello<｜end▁of▁sentence｜>"));
    }

    [Test]
    public void AddsTheAssistantPromptOnlyWhenAsked()
    {
        ChatMessage[] messages = [ChatMessage.User("Hi")];

        Assert.That(DeepSeekChatTemplate.Render(messages, addGenerationPrompt: true, Bos), Is.EqualTo(Bos + "<｜User｜>Hi<｜Assistant｜>"));
        Assert.That(DeepSeekChatTemplate.Render(messages, addGenerationPrompt: false, Bos), Is.EqualTo(Bos + "<｜User｜>Hi"));
    }

    [Test]
    public void RendersTwoToolCallsTheirOutputsAndTheFinalAnswer()
    {
        ChatMessage[] messages =
        [
            ChatMessage.System("S"),
            ChatMessage.User("Weather in Paris and Rome?"),
            ChatMessage.AssistantToolCalls(new ToolCall("get_weather", """{"city":"Paris"}"""), new ToolCall("get_weather", """{"city":"Rome"}""")),
            ChatMessage.Tool("18C"),
            ChatMessage.Tool("21C"),
            ChatMessage.Assistant("Paris 18C, Rome 21C."),
            ChatMessage.User("Thanks"),
        ];

        string text = DeepSeekChatTemplate.Render(messages, addGenerationPrompt: true, Bos);

        Assert.That(text, Is.EqualTo(
            Bos + "S<｜User｜>Weather in Paris and Rome?"
            + "<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\":\"Paris\"}\n```<｜tool▁call▁end｜>"
            + "\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\":\"Rome\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
            + "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>18C<｜tool▁output▁end｜>"
            + "\n<｜tool▁output▁begin｜>21C<｜tool▁output▁end｜>"
            + "<｜tool▁outputs▁end｜>Paris 18C, Rome 21C.<｜end▁of▁sentence｜>"
            + "<｜User｜>Thanks<｜Assistant｜>"));
    }

    [Test]
    public void LeavesASingleToolCallUnclosedAndEndsWithToolOutputsEndInsteadOfTheAssistantPrompt()
    {
        ChatMessage[] messages =
        [
            ChatMessage.User("Time?"), ChatMessage.AssistantToolCalls(new ToolCall("get_time", "{}")), ChatMessage.Tool("12:00"),
        ];

        string text = DeepSeekChatTemplate.Render(messages, addGenerationPrompt: true, Bos);

        Assert.That(text, Is.EqualTo(
            Bos + "<｜User｜>Time?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n```json\n{}\n```<｜tool▁call▁end｜>"
            + "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>12:00<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"));
    }

    [Test]
    public void OpensToolCallsAndToolOutputsOnlyOncePerConversation()
    {
        ChatMessage[] messages =
        [
            ChatMessage.User("Q"),
            ChatMessage.AssistantToolCalls(new ToolCall("a", "{}")),
            ChatMessage.Tool("ra"),
            ChatMessage.AssistantToolCalls(new ToolCall("b", "{}")),
            ChatMessage.Tool("rb"),
        ];

        string text = DeepSeekChatTemplate.Render(messages, addGenerationPrompt: true, Bos);

        Assert.That(text, Is.EqualTo(
            Bos + "<｜User｜>Q<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>a\n```json\n{}\n```<｜tool▁call▁end｜>"
            + "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>ra<｜tool▁output▁end｜>"
            + "\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>b\n```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
            + "\n<｜tool▁output▁begin｜>rb<｜tool▁output▁end｜><｜tool▁outputs▁end｜>"));
    }

    [Test]
    public void DropsToolOutputsEndWhenAUserTurnFollowsToolOutputs()
    {
        ChatMessage[] messages =
        [
            ChatMessage.User("Q"), ChatMessage.AssistantToolCalls(new ToolCall("a", "{}")), ChatMessage.Tool("ra"), ChatMessage.User("next"),
        ];

        string text = DeepSeekChatTemplate.Render(messages, addGenerationPrompt: true, Bos);

        Assert.That(text, Is.EqualTo(
            Bos + "<｜User｜>Q<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>a\n```json\n{}\n```<｜tool▁call▁end｜>"
            + "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>ra<｜tool▁output▁end｜><｜User｜>next<｜Assistant｜>"));
    }

    [Test]
    public void KeepsThinkBlocksOfEarlierAssistantTurns()
    {
        ChatMessage[] messages = [ChatMessage.User("Q"), ChatMessage.Assistant("<think>x</think>answer"), ChatMessage.User("R")];

        string text = DeepSeekChatTemplate.Render(messages, addGenerationPrompt: true, Bos);

        Assert.That(text, Is.EqualTo(Bos + "<｜User｜>Q<｜Assistant｜><think>x</think>answer<｜end▁of▁sentence｜><｜User｜>R<｜Assistant｜>"));
    }

    [Test]
    public void RendersNothingForAnAssistantTurnWithNeitherContentNorToolCalls()
    {
        ChatMessage[] messages = [ChatMessage.User("Q"), new ChatMessage("assistant", null), ChatMessage.User("R")];

        string text = DeepSeekChatTemplate.Render(messages, addGenerationPrompt: false, Bos);

        Assert.That(text, Is.EqualTo(Bos + "<｜User｜>Q<｜User｜>R"));
    }

    [Test]
    public void RejectsAnUnknownRoleNamingIt()
    {
        ChatMessage[] messages = [ChatMessage.User("Q"), new ChatMessage("developer", "be brief")];

        var error = Assert.Throws<ArgumentException>(() => DeepSeekChatTemplate.Render(messages, addGenerationPrompt: true, Bos));

        Assert.That(error!.Message, Does.Contain("'developer'").And.Contain("Message 1"));
    }

    [Test]
    public void RejectsAUserTurnWithoutContent()
    {
        ChatMessage[] messages = [new ChatMessage("user", null)];

        var error = Assert.Throws<ArgumentException>(() => DeepSeekChatTemplate.Render(messages, addGenerationPrompt: true, Bos));

        Assert.That(error!.Message, Does.Contain("'user'").And.Contain("no content"));
    }

    [Test]
    public void EncodesChatMarkersInARenderedPromptAsSingleIds()
    {
        DeepSeekTokenizer tokenizer = SharedTokenizer.Instance;
        string text = DeepSeekChatTemplate.Render([ChatMessage.User("Hi")], addGenerationPrompt: true, tokenizer.BosToken);

        IReadOnlyList<int> ids = tokenizer.Encode(text);

        Assert.That(ids[0], Is.EqualTo(tokenizer.BosTokenId));
        Assert.That(ids[1], Is.EqualTo(128803)); // <｜User｜>
        Assert.That(ids[^1], Is.EqualTo(128804)); // <｜Assistant｜>
    }
}
