using System.Text;
using System.Text.Json;
using Ftransformers.Generation;
using Ftransformers.Tokenization;

namespace Ftransformers.Server.OpenAI;

/// <summary>
/// A validated request: what to generate, how to answer, the body field that holds the input, and how many
/// completions of the prompt to generate (OpenAI's <c>n</c>).
/// </summary>
internal sealed record ParsedRequest(string Model, GenerationRequest Generation, bool Stream, bool IncludeUsage, string InputField, int Choices)
{
    /// <summary>Usage on every streamed chunk (vLLM's and SGLang's <c>stream_options.continuous_usage_stats</c>).</summary>
    public bool ContinuousUsage { get; init; }
}

/// <summary>
/// Reads chat and text completion bodies field by field, so that a wrong value is reported with the field's name
/// (OpenAI's <c>param</c>). Fields the engine cannot honour are refused, not ignored.
/// </summary>
internal static class RequestParser
{
    /// <summary>Most completions one request may ask for.</summary>
    public const int MaxChoices = 16;

    public static ParsedRequest ParseChat(JsonElement body, int contextLength)
    {
        RequireObject(body);
        var messages = new List<ChatMessage>();
        if (!body.TryGetProperty("messages", out JsonElement list))
            throw ApiException.BadRequest("'messages' is required.", "messages");
        if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
            throw ApiException.BadRequest("'messages' must be a non-empty array.", "messages");
        int index = 0;
        foreach (JsonElement message in list.EnumerateArray())
            messages.Add(ParseMessage(message, $"messages[{index++}]"));

        IReadOnlyList<ToolDefinition>? tools = Tools(body);
        int? maxTokens = Int(body, "max_completion_tokens", 1, contextLength) ?? Int(body, "max_tokens", 1, contextLength);
        bool logprobs = Bool(body, "logprobs") ?? false;
        int topLogprobs = Int(body, "top_logprobs", 0, 20) ?? 0;
        if (topLogprobs > 0 && !logprobs)
            throw ApiException.BadRequest("top_logprobs needs logprobs to be true.", "top_logprobs");
        var request = Common(body, new GenerationRequest
        {
            Messages = messages,
            Tools = tools,
            ToolChoice = ToolChoice(body, tools),
            ParallelToolCalls = Bool(body, "parallel_tool_calls") ?? true,
            ResponseFormat = ResponseFormat(body),
            Logprobs = logprobs,
            TopLogprobs = topLogprobs,
        }, maxTokens ?? contextLength);
        return Finish(body, request, "messages");
    }

    public static ParsedRequest ParseCompletion(JsonElement body, int contextLength)
    {
        RequireObject(body);
        if (!body.TryGetProperty("prompt", out JsonElement prompt))
            throw ApiException.BadRequest("'prompt' is required.", "prompt");
        GenerationRequest input = prompt.ValueKind switch
        {
            JsonValueKind.String => new GenerationRequest { Prompt = Text(prompt, "prompt") },
            JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String => new GenerationRequest { Prompt = Text(prompt[0], "prompt") },
            JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.Array => new GenerationRequest { PromptTokens = TokenIds(prompt[0]) },
            JsonValueKind.Array when prompt.GetArrayLength() > 0 && prompt[0].ValueKind == JsonValueKind.Number => new GenerationRequest { PromptTokens = TokenIds(prompt) },
            JsonValueKind.Array when prompt.GetArrayLength() > 1 => throw ApiException.BadRequest("Only one prompt per request is supported.", "prompt"),
            _ => throw ApiException.BadRequest("'prompt' must be a string, or an array of token ids.", "prompt"),
        };
        if (body.TryGetProperty("echo", out JsonElement echo) && echo.ValueKind == JsonValueKind.True)
            throw ApiException.BadRequest("echo is not supported.", "echo");
        if (body.TryGetProperty("suffix", out JsonElement suffix) && suffix.ValueKind == JsonValueKind.String && Text(suffix, "suffix").Length > 0)
            throw ApiException.BadRequest("suffix is not supported.", "suffix");
        // Legacy completions ask for the top alternatives with one number: logprobs = 0 gives the chosen token's alone.
        int? logprobs = Int(body, "logprobs", 0, 5);
        input = input with { Logprobs = logprobs != null, TopLogprobs = logprobs ?? 0, ResponseFormat = ResponseFormat(body) };
        // OpenAI's legacy completions default to 16 tokens.
        var request = Common(body, input, Int(body, "max_tokens", 1, contextLength) ?? 16);
        return Finish(body, request, "prompt");
    }

    private static void RequireObject(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest("The request body must be a JSON object.", null);
    }

    // Fields of OpenAI's, SGLang's and vLLM's APIs that change what is generated and that this server does not
    // implement: refused, never ignored. (Fields that only label a request, such as user or metadata, are ignored.)
    private static readonly string[] Unsupported =
    [
        "functions", "function_call", "chat_template_kwargs", "continue_final_message", "regex", "ebnf", "json_schema", "structural_tag",
        "stop_token_ids", "lora_path", "prediction", "audio", "reasoning_effort", "web_search_options", "return_hidden_states",
        "guided_json", "guided_regex", "guided_choice", "guided_grammar", "guided_decoding_backend", "guided_whitespace_pattern",
    ];

    private static void RefuseUnsupported(JsonElement body)
    {
        foreach (string field in Unsupported)
            if (body.TryGetProperty(field, out JsonElement value) && value.ValueKind != JsonValueKind.Null)
                throw ApiException.BadRequest($"'{field}' is not supported by this server.", field);
        if (body.TryGetProperty("modalities", out JsonElement modalities) && modalities.ValueKind != JsonValueKind.Null
            && !(modalities.ValueKind == JsonValueKind.Array && modalities.EnumerateArray().All(m => m.ValueKind == JsonValueKind.String && m.GetString() == "text")))
            throw ApiException.BadRequest("Only text output is supported: 'modalities' may hold \"text\" only.", "modalities");
        if (Int(body, "min_tokens", 0, int.MaxValue) is > 0)
            throw ApiException.BadRequest("'min_tokens' is not supported; send 0 or leave it out.", "min_tokens");
        if (Int(body, "best_of", 1, int.MaxValue) is > 1)
            throw ApiException.BadRequest("'best_of' is not supported; use n for several completions.", "best_of");
    }

    private static GenerationRequest Common(JsonElement body, GenerationRequest input, int maxTokens)
    {
        RefuseUnsupported(body);
        int? topK = Int(body, "top_k", -1, int.MaxValue);
        long? seed = Long(body, "seed");
        var sampling = new SamplingOptions
        {
            Temperature = (float)(Number(body, "temperature", 0, 2) ?? 1),
            TopP = (float)(Number(body, "top_p", 0, 1, exclusiveMin: true) ?? 1),
            TopK = topK is null or -1 ? 0 : topK.Value,
            MinP = (float)(Number(body, "min_p", 0, 1) ?? 0),
            Seed = seed is { } s ? unchecked((int)(s ^ (s >> 32))) : null,
            PresencePenalty = (float)(Number(body, "presence_penalty", -2, 2) ?? 0),
            FrequencyPenalty = (float)(Number(body, "frequency_penalty", -2, 2) ?? 0),
            RepetitionPenalty = (float)(Number(body, "repetition_penalty", 0, 10, exclusiveMin: true) ?? 1),
            LogitBias = LogitBias(body),
        };
        return input with
        {
            MaxTokens = maxTokens,
            Sampling = sampling,
            Stop = Stop(body),
            IgnoreEos = Bool(body, "ignore_eos") ?? false,
        };
    }

    private static ParsedRequest Finish(JsonElement body, GenerationRequest request, string inputField)
    {
        if (!body.TryGetProperty("model", out JsonElement model) || model.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(Text(model, "model")))
            throw ApiException.BadRequest("'model' is required and must be a string.", "model");
        bool stream = Bool(body, "stream") ?? false;
        bool includeUsage = false, continuous = false;
        if (body.TryGetProperty("stream_options", out JsonElement options) && options.ValueKind == JsonValueKind.Object)
        {
            includeUsage = Bool(options, "include_usage", "stream_options.include_usage") ?? false;
            continuous = Bool(options, "continuous_usage_stats", "stream_options.continuous_usage_stats") ?? false;
            if (continuous && !includeUsage)
                throw ApiException.BadRequest("'stream_options.continuous_usage_stats' needs 'stream_options.include_usage': true.", "stream_options.continuous_usage_stats");
        }
        return new ParsedRequest(Text(model, "model"), request, stream, includeUsage, inputField, Int(body, "n", 1, MaxChoices) ?? 1) { ContinuousUsage = continuous };
    }

    private static ChatMessage ParseMessage(JsonElement message, string path)
    {
        if (message.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest($"'{path}' must be an object.", path);
        if (!message.TryGetProperty("role", out JsonElement roleElement) || roleElement.ValueKind != JsonValueKind.String)
            throw ApiException.BadRequest($"'{path}.role' is required.", $"{path}.role");
        string role = Text(roleElement, $"{path}.role") switch
        {
            "system" or "developer" => ChatMessage.SystemRole,
            "user" => ChatMessage.UserRole,
            "assistant" => ChatMessage.AssistantRole,
            "tool" => ChatMessage.ToolRole,
            string other => throw ApiException.BadRequest($"'{path}.role' is '{other}'; expected system, developer, user, assistant or tool.", $"{path}.role"),
        };
        string? content = Content(message, path);
        if (role == ChatMessage.AssistantRole && message.TryGetProperty("tool_calls", out JsonElement calls) && calls.ValueKind == JsonValueKind.Array && calls.GetArrayLength() > 0)
            return ChatMessage.AssistantToolCalls([.. calls.EnumerateArray().Select((call, i) => ToolCall(call, $"{path}.tool_calls[{i}]"))]);
        if (content == null && role != ChatMessage.AssistantRole)
            throw ApiException.BadRequest($"'{path}.content' is required.", $"{path}.content");
        return new ChatMessage(role, content ?? "");
    }

    private static string? Content(JsonElement message, string path)
    {
        if (!message.TryGetProperty("content", out JsonElement content) || content.ValueKind == JsonValueKind.Null)
            return null;
        if (content.ValueKind == JsonValueKind.String)
            return Text(content, $"{path}.content");
        if (content.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest($"'{path}.content' must be a string or an array of text parts.", $"{path}.content");
        var text = new StringBuilder();
        int i = 0;
        foreach (JsonElement part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String || Text(type, $"{path}.content[{i}].type") != "text"
                || !part.TryGetProperty("text", out JsonElement partText) || partText.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"'{path}.content[{i}]' must be a text part; other content is not supported.", $"{path}.content[{i}]");
            text.Append(Text(partText, $"{path}.content[{i}].text"));
            i++;
        }
        return text.ToString();
    }

    private static ToolCall ToolCall(JsonElement call, string path)
    {
        if (call.ValueKind == JsonValueKind.Object && call.TryGetProperty("function", out JsonElement function) && function.ValueKind == JsonValueKind.Object
            && function.TryGetProperty("name", out JsonElement name) && name.ValueKind == JsonValueKind.String)
        {
            string arguments = function.TryGetProperty("arguments", out JsonElement args) && args.ValueKind == JsonValueKind.String ? Text(args, $"{path}.function.arguments") : "{}";
            return new ToolCall(Text(name, $"{path}.function.name"), arguments);
        }
        throw ApiException.BadRequest($"'{path}' must have function.name and function.arguments.", path);
    }

    private static IReadOnlyList<ToolDefinition>? Tools(JsonElement body)
    {
        if (!body.TryGetProperty("tools", out JsonElement tools) || tools.ValueKind == JsonValueKind.Null)
            return null;
        if (tools.ValueKind != JsonValueKind.Array)
            throw ApiException.BadRequest("'tools' must be an array of function tools.", "tools");
        var definitions = new List<ToolDefinition>();
        int i = 0;
        foreach (JsonElement tool in tools.EnumerateArray())
        {
            string path = $"tools[{i++}]";
            if (tool.ValueKind != JsonValueKind.Object || !tool.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String || Text(type, $"{path}.type") != "function")
                throw ApiException.BadRequest($"'{path}' must be an object with type 'function'; other tool types are not supported.", $"{path}.type");
            if (!tool.TryGetProperty("function", out JsonElement function) || function.ValueKind != JsonValueKind.Object)
                throw ApiException.BadRequest($"'{path}.function' is required.", $"{path}.function");
            if (!function.TryGetProperty("name", out JsonElement name) || name.ValueKind != JsonValueKind.String)
                throw ApiException.BadRequest($"'{path}.function.name' is required.", $"{path}.function.name");
            string? description = function.TryGetProperty("description", out JsonElement d) && d.ValueKind == JsonValueKind.String ? Text(d, $"{path}.function.description") : null;
            JsonElement? parameters = null;
            if (function.TryGetProperty("parameters", out JsonElement p) && p.ValueKind != JsonValueKind.Null)
                parameters = p.ValueKind == JsonValueKind.Object ? p.Clone() : throw ApiException.BadRequest($"'{path}.function.parameters' must be a JSON Schema object.", $"{path}.function.parameters");
            definitions.Add(new ToolDefinition(Text(name, $"{path}.function.name"), description, parameters));
        }
        return definitions.Count > 0 ? definitions : null;
    }

    private static ToolChoice? ToolChoice(JsonElement body, IReadOnlyList<ToolDefinition>? tools)
    {
        if (!body.TryGetProperty("tool_choice", out JsonElement choice) || choice.ValueKind == JsonValueKind.Null)
            return null;
        ToolChoice parsed = choice.ValueKind switch
        {
            JsonValueKind.String => Text(choice, "tool_choice") switch
            {
                "none" => Generation.ToolChoice.None,
                "auto" => Generation.ToolChoice.Auto,
                "required" => Generation.ToolChoice.Required,
                string other => throw ApiException.BadRequest($"'tool_choice' is '{other}'; expected none, auto, required or a function.", "tool_choice"),
            },
            JsonValueKind.Object when choice.TryGetProperty("function", out JsonElement f) && f.ValueKind == JsonValueKind.Object
                && f.TryGetProperty("name", out JsonElement n) && n.ValueKind == JsonValueKind.String
                => Generation.ToolChoice.Function(Text(n, "tool_choice.function.name")),
            _ => throw ApiException.BadRequest("'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}.", "tool_choice"),
        };
        if (parsed.Mode is ToolChoiceMode.Required or ToolChoiceMode.Function && tools == null)
            throw ApiException.BadRequest("'tool_choice' asks for a tool call, but the request defines no tools.", "tool_choice");
        if (parsed.Mode == ToolChoiceMode.Function && tools!.All(t => t.Name != parsed.FunctionName))
            throw ApiException.BadRequest($"'tool_choice' names function '{parsed.FunctionName}', which 'tools' does not define.", "tool_choice");
        return parsed;
    }

    private static ResponseFormat ResponseFormat(JsonElement body)
    {
        if (!body.TryGetProperty("response_format", out JsonElement format) || format.ValueKind == JsonValueKind.Null)
            return Generation.ResponseFormat.Text;
        if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String)
            throw ApiException.BadRequest("'response_format' must be an object with a 'type'.", "response_format");
        string kind = Text(type, "response_format.type");
        switch (kind)
        {
            case "text":
                return Generation.ResponseFormat.Text;
            case "json_object":
                return Generation.ResponseFormat.JsonObject;
            case "json_schema":
                if (!format.TryGetProperty("json_schema", out JsonElement spec) || spec.ValueKind != JsonValueKind.Object)
                    throw ApiException.BadRequest("'response_format.json_schema' is required for type json_schema.", "response_format.json_schema");
                if (!spec.TryGetProperty("name", out JsonElement name) || name.ValueKind != JsonValueKind.String)
                    throw ApiException.BadRequest("'response_format.json_schema.name' is required.", "response_format.json_schema.name");
                // strict or not, the schema is enforced while decoding; a schema without one allows any JSON value.
                JsonElement schema = spec.TryGetProperty("schema", out JsonElement s) && s.ValueKind != JsonValueKind.Null ? s : JsonDocument.Parse("{}").RootElement;
                if (schema.ValueKind is not (JsonValueKind.Object or JsonValueKind.True))
                    throw ApiException.BadRequest("'response_format.json_schema.schema' must be a JSON Schema object.", "response_format.json_schema.schema");
                if (spec.TryGetProperty("strict", out JsonElement strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                    throw ApiException.BadRequest("'response_format.json_schema.strict' must be true or false.", "response_format.json_schema.strict");
                return Generation.ResponseFormat.ForJsonSchema(schema, Text(name, "response_format.json_schema.name"));
            default:
                throw ApiException.BadRequest($"'response_format.type' is '{kind}'; expected text, json_object or json_schema.", "response_format.type");
        }
    }

    private static Dictionary<int, float>? LogitBias(JsonElement body)
    {
        if (!body.TryGetProperty("logit_bias", out JsonElement bias) || bias.ValueKind == JsonValueKind.Null)
            return null;
        if (bias.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest("'logit_bias' must map token ids to numbers in [-100, 100].", "logit_bias");
        var map = new Dictionary<int, float>();
        foreach (JsonProperty entry in bias.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id)
                || entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetDouble(out double value) || value is < -100 or > 100)
                throw ApiException.BadRequest($"'logit_bias' entry '{entry.Name}' must map a token id to a number in [-100, 100].", "logit_bias");
            map[id] = (float)value;
        }
        return map.Count > 0 ? map : null;
    }

    private static int[] TokenIds(JsonElement array)
    {
        var ids = new int[array.GetArrayLength()];
        int i = 0;
        foreach (JsonElement id in array.EnumerateArray())
        {
            if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out ids[i]) || ids[i] < 0)
                throw ApiException.BadRequest($"'prompt' holds a token id that is not a non-negative integer at index {i}.", "prompt");
            i++;
        }
        if (ids.Length == 0)
            throw ApiException.BadRequest("'prompt' must not be empty.", "prompt");
        return ids;
    }

    private static string[] Stop(JsonElement body)
    {
        if (!body.TryGetProperty("stop", out JsonElement stop) || stop.ValueKind == JsonValueKind.Null)
            return [];
        if (stop.ValueKind == JsonValueKind.String)
            return Text(stop, "stop") is { Length: > 0 } single ? [single] : [];
        if (stop.ValueKind == JsonValueKind.Array && stop.GetArrayLength() <= 16 && stop.EnumerateArray().All(s => s.ValueKind == JsonValueKind.String && Text(s, "stop").Length > 0))
            return [.. stop.EnumerateArray().Select(s => Text(s, "stop"))];
        throw ApiException.BadRequest("'stop' must be a non-empty string or an array of at most 16 of them.", "stop");
    }

    // JSON may escape a lone UTF-16 surrogate ("\ud800"), which no .NET string can be decoded from.
    private static string Text(JsonElement value, string param)
    {
        try
        {
            return value.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw ApiException.BadRequest($"'{param}' holds an invalid Unicode escape (a lone UTF-16 surrogate).", param);
        }
    }

    private static bool? Bool(JsonElement body, string name, string? param = null)
    {
        if (!body.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
            return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.BadRequest($"'{param ?? name}' must be true or false.", param ?? name),
        };
    }

    private static double? Number(JsonElement body, string name, double min, double max, bool exclusiveMin = false)
    {
        if (!body.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
            return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double number) || number < min || number > max || (exclusiveMin && number == min))
            throw ApiException.BadRequest($"'{name}' must be a number in {(exclusiveMin ? "(" : "[")}{min}, {max}].", name);
        return number;
    }

    private static int? Int(JsonElement body, string name, int min, int max)
    {
        if (!body.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
            return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long number) || number < min || number > max)
            throw ApiException.BadRequest($"'{name}' must be an integer in [{min}, {max}].", name);
        return (int)number;
    }

    private static long? Long(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
            return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long number))
            throw ApiException.BadRequest($"'{name}' must be an integer.", name);
        return number;
    }
}
