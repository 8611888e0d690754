using System.Text.Encodings.Web;
using System.Text.Json;

namespace Ftransformers.Generation.Grammar;

/// <summary>
/// Compiles a JSON Schema into a grammar: the subset OpenAI's structured outputs accept (<c>type</c>,
/// <c>properties</c>, <c>required</c>, <c>additionalProperties</c>, <c>items</c>, <c>minItems</c>/<c>maxItems</c>,
/// <c>minLength</c>/<c>maxLength</c>, <c>enum</c>, <c>const</c>, <c>anyOf</c>, <c>$ref</c> into <c>$defs</c> or
/// <c>definitions</c>). Every other JSON Schema keyword that constrains a value is refused with
/// <see cref="JsonSchemaException"/>, never ignored; keywords JSON Schema does not define (Semantic Kernel writes
/// <c>condition</c>) are annotations, as the specification says. Output is compact JSON with properties in the order
/// declared.
/// </summary>
internal sealed class JsonSchemaGrammar
{
    /// <summary>JSON Schema's constraining keywords that the compiler does not implement.</summary>
    private static readonly HashSet<string> Unsupported =
    [
        "format", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "oneOf", "allOf", "not",
        "if", "then", "else", "dependentRequired", "dependentSchemas", "dependencies", "propertyNames", "patternProperties",
        "prefixItems", "additionalItems", "contains", "minContains", "maxContains", "uniqueItems", "minProperties", "maxProperties",
        "unevaluatedProperties", "unevaluatedItems", "contentEncoding", "contentMediaType", "contentSchema", "$dynamicRef", "$recursiveRef",
    ];

    /// <summary>Writes enum values and keys as a model would: compact, non-ASCII as UTF-8.</summary>
    internal static readonly JsonSerializerOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, WriteIndented = false };

    private readonly JsonElement _root;
    private readonly Dictionary<string, ReferenceNode> _references = [];

    private JsonSchemaGrammar(JsonElement root) => _root = root;

    /// <summary>Any JSON value (for <c>response_format: json_object</c>, and the empty schema).</summary>
    public static GrammarNode AnyValue { get; } = BuildAnyValue();

    /// <summary>Any JSON object (what <c>json_object</c> promises).</summary>
    public static GrammarNode AnyObject { get; } = new ObjectNode(AnyValue);

    /// <summary>Compiles <paramref name="schema"/>.</summary>
    /// <exception cref="JsonSchemaException">The schema uses a keyword the compiler does not support, or is malformed.</exception>
    public static GrammarNode Compile(JsonElement schema)
    {
        var compiler = new JsonSchemaGrammar(schema);
        GrammarNode root = compiler.Node(schema, "#");
        // References are compiled after the root, each once, so recursive ones close on themselves.
        while (compiler._references.Values.FirstOrDefault(r => r.Target == null) is { } pending)
            pending.Target = compiler.Node(compiler.Resolve(pending.Name), pending.Name);
        if (GrammarChecks.LeftRecursive(compiler._references.Values) is { } loop)
            throw new JsonSchemaException($"'{loop.Name}' refers to itself before any value is written, so it describes no JSON value.", loop.Name);
        if (!GrammarChecks.Matchable(root))
            throw new JsonSchemaException("The schema admits no finite JSON value (required properties or minItems recurse without end).", "#");
        return root;
    }

    private GrammarNode Node(JsonElement schema, string path)
    {
        if (schema.ValueKind == JsonValueKind.True)
            return AnyValue;
        if (schema.ValueKind != JsonValueKind.Object)
            throw new JsonSchemaException("A schema must be an object or true.", path);

        foreach (JsonProperty keyword in schema.EnumerateObject())
            if (Unsupported.Contains(keyword.Name))
                throw new JsonSchemaException($"The keyword '{keyword.Name}' is not supported; supported: {string.Join(", ", Supported)}.", $"{path}/{keyword.Name}");

        if (schema.TryGetProperty("$ref", out JsonElement reference))
        {
            if (schema.EnumerateObject().Any(k => Supported.Contains(k.Name) && k.Name != "$ref"))
                throw new JsonSchemaException("'$ref' cannot be combined with other constraining keywords.", path);
            return Reference(reference, $"{path}/$ref");
        }
        if (schema.TryGetProperty("const", out JsonElement constant))
            return Values([constant], schema, "const", path);
        if (schema.TryGetProperty("enum", out JsonElement values))
        {
            if (values.ValueKind != JsonValueKind.Array || values.GetArrayLength() == 0)
                throw new JsonSchemaException("'enum' must be a non-empty array.", $"{path}/enum");
            return Values([.. values.EnumerateArray()], schema, "enum", path);
        }
        if (schema.TryGetProperty("anyOf", out JsonElement anyOf))
        {
            if (anyOf.ValueKind != JsonValueKind.Array || anyOf.GetArrayLength() == 0)
                throw new JsonSchemaException("'anyOf' must be a non-empty array of schemas.", $"{path}/anyOf");
            // Each branch is matched on its own, so constraints beside anyOf would be lost: they belong in the branches.
            if (schema.EnumerateObject().Select(k => k.Name).FirstOrDefault(k => Supported.Contains(k) && k != "anyOf") is { } beside)
                throw new JsonSchemaException($"'anyOf' cannot be combined with '{beside}'; move it into each branch.", $"{path}/{beside}");
            return Choice([.. anyOf.EnumerateArray().Select((s, i) => Node(s, $"{path}/anyOf/{i}"))]);
        }
        if (!schema.TryGetProperty("type", out JsonElement type))
        {
            // Without a type, keywords of one kind still say what the value is.
            string[] implied = [.. ImpliedTypes.Where(t => t.Keywords.Any(k => schema.TryGetProperty(k, out _))).Select(t => t.Type)];
            return implied switch
            {
                [] => AnyValue,
                [string one] => OfType(one, schema, path),
                _ => throw new JsonSchemaException($"Keywords of several types ({string.Join(", ", implied)}) without a 'type'; say which.", path),
            };
        }
        if (type.ValueKind == JsonValueKind.String)
            return OfType(type.GetString()!, schema, path);
        if (type.ValueKind == JsonValueKind.Array && type.GetArrayLength() > 0 && type.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String))
            return Choice([.. type.EnumerateArray().Select(t => OfType(t.GetString()!, schema, path))]);
        throw new JsonSchemaException("'type' must be a type name or a non-empty array of them.", $"{path}/type");
    }

    private static readonly (string Type, string[] Keywords)[] ImpliedTypes =
    [
        ("object", ["properties", "required", "additionalProperties"]),
        ("array", ["items", "minItems", "maxItems"]),
        ("string", ["minLength", "maxLength"]),
    ];

    // const and enum fix the value; beside them only a type may stand, and every value must be of it.
    private GrammarNode Values(JsonElement[] values, JsonElement schema, string keyword, string path)
    {
        if (schema.EnumerateObject().Select(k => k.Name).FirstOrDefault(k => Supported.Contains(k) && k is not ("type" or "const" or "enum")) is { } beside)
            throw new JsonSchemaException($"'{keyword}' cannot be combined with '{beside}': the listed values are the whole answer.", $"{path}/{beside}");
        if (schema.TryGetProperty("type", out JsonElement type))
        {
            string[] types = type.ValueKind == JsonValueKind.String ? [type.GetString()!]
                : type.ValueKind == JsonValueKind.Array ? [.. type.EnumerateArray().Where(t => t.ValueKind == JsonValueKind.String).Select(t => t.GetString()!)]
                : throw new JsonSchemaException("'type' must be a type name or an array of them.", $"{path}/type");
            foreach (JsonElement value in values)
                if (!types.Any(t => IsOfType(value, t)))
                    throw new JsonSchemaException($"The {keyword} value {value.GetRawText()} is not of type {string.Join(" or ", types)}.", $"{path}/{keyword}");
        }
        return Choice([.. values.Select(Literal)]);
    }

    private static bool IsOfType(JsonElement value, string type) => (type, value.ValueKind) switch
    {
        ("object", JsonValueKind.Object) or ("array", JsonValueKind.Array) or ("string", JsonValueKind.String) or ("number", JsonValueKind.Number) => true,
        ("boolean", JsonValueKind.True or JsonValueKind.False) or ("null", JsonValueKind.Null) => true,
        ("integer", JsonValueKind.Number) => value.TryGetDecimal(out decimal d) && d == decimal.Truncate(d),
        _ => false,
    };

    private static readonly string[] Supported = ["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength", "enum", "const", "anyOf", "$ref"];

    private GrammarNode OfType(string type, JsonElement schema, string path) => type switch
    {
        "object" => Object(schema, path),
        "array" => ArrayOf(schema, path),
        "string" => StringOf(schema, path),
        "number" => NumberNode.Number,
        "integer" => NumberNode.Integer,
        "boolean" => Choice([LiteralNode.Of("true"), LiteralNode.Of("false")]),
        "null" => LiteralNode.Of("null"),
        _ => throw new JsonSchemaException($"Unknown type '{type}'; expected object, array, string, number, integer, boolean or null.", $"{path}/type"),
    };

    private ArrayNode ArrayOf(JsonElement schema, string path)
    {
        (int min, int max) = Range(schema, "minItems", "maxItems", path);
        return new ArrayNode(schema.TryGetProperty("items", out JsonElement items) ? Node(items, $"{path}/items") : AnyValue, min, max);
    }

    private static StringNode StringOf(JsonElement schema, string path)
    {
        (int min, int max) = Range(schema, "minLength", "maxLength", path);
        return new StringNode(min, max);
    }

    private GrammarNode Object(JsonElement schema, string path)
    {
        var required = new HashSet<string>();
        if (schema.TryGetProperty("required", out JsonElement names))
        {
            if (names.ValueKind != JsonValueKind.Array || names.EnumerateArray().Any(n => n.ValueKind != JsonValueKind.String))
                throw new JsonSchemaException("'required' must be an array of property names.", $"{path}/required");
            required.UnionWith(names.EnumerateArray().Select(n => n.GetString()!));
        }
        if (!schema.TryGetProperty("properties", out JsonElement properties))
        {
            if (required.Count > 0)
                throw new JsonSchemaException($"'required' names '{required.First()}', which 'properties' does not declare.", $"{path}/required");
            if (!schema.TryGetProperty("additionalProperties", out JsonElement additional) || additional.ValueKind == JsonValueKind.True)
                return AnyObject;
            return additional.ValueKind == JsonValueKind.False ? new ObjectNode([]) : new ObjectNode(Node(additional, $"{path}/additionalProperties"));
        }
        if (properties.ValueKind != JsonValueKind.Object)
            throw new JsonSchemaException("'properties' must be an object.", $"{path}/properties");
        // Only declared properties are written: whatever additionalProperties allows, that output is valid.
        var declared = properties.EnumerateObject()
            .Select(p => new ObjectProperty(p.Name, LiteralNode.Of(JsonSerializer.Serialize(p.Name, Compact) + ":"), Node(p.Value, $"{path}/properties/{p.Name}"), required.Contains(p.Name)))
            .ToList();
        if (required.FirstOrDefault(r => declared.All(p => p.Name != r)) is { } missing)
            throw new JsonSchemaException($"'required' names '{missing}', which 'properties' does not declare.", $"{path}/required");
        if (schema.TryGetProperty("additionalProperties", out JsonElement extra) && extra.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Object))
            throw new JsonSchemaException("'additionalProperties' must be a boolean or a schema.", $"{path}/additionalProperties");
        return new ObjectNode(declared);
    }

    private GrammarNode Reference(JsonElement reference, string path)
    {
        string name = reference.ValueKind == JsonValueKind.String ? reference.GetString()! : throw new JsonSchemaException("'$ref' must be a string.", path);
        if (!_references.TryGetValue(name, out ReferenceNode? node))
        {
            Resolve(name, path);   // fails early, naming where the bad reference is
            _references[name] = node = new ReferenceNode(name);
        }
        return node;
    }

    private JsonElement Resolve(string name, string? path = null)
    {
        JsonElement target = _root;
        if (name != "#")
        {
            if (!name.StartsWith("#/", StringComparison.Ordinal))
                throw new JsonSchemaException($"Only local references ('#/$defs/...') are supported, not '{name}'.", path ?? name);
            foreach (string segment in name[2..].Split('/'))
            {
                string key = Uri.UnescapeDataString(segment).Replace("~1", "/").Replace("~0", "~");
                if (target.ValueKind != JsonValueKind.Object || !target.TryGetProperty(key, out target))
                    throw new JsonSchemaException($"The reference '{name}' points to nothing.", path ?? name);
            }
        }
        return target;
    }

    private static (int Min, int Max) Range(JsonElement schema, string minKeyword, string maxKeyword, string path)
    {
        int min = Count(schema, minKeyword, path) ?? 0, max = Count(schema, maxKeyword, path) ?? int.MaxValue;
        return min <= max ? (min, max) : throw new JsonSchemaException($"'{minKeyword}' ({min}) exceeds '{maxKeyword}' ({max}): no value fits.", $"{path}/{minKeyword}");
    }

    private static int? Count(JsonElement schema, string keyword, string path)
    {
        if (!schema.TryGetProperty(keyword, out JsonElement value))
            return null;
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int count) && count >= 0
            ? count
            : throw new JsonSchemaException($"'{keyword}' must be a non-negative integer.", $"{path}/{keyword}");
    }

    private static GrammarNode Literal(JsonElement value) => LiteralNode.Of(JsonSerializer.Serialize(value, Compact));

    private static GrammarNode Choice(IReadOnlyList<GrammarNode> alternatives) => alternatives.Count == 1 ? alternatives[0] : new ChoiceNode(alternatives);

    private static GrammarNode BuildAnyValue()
    {
        var any = new ReferenceNode("any JSON value");
        any.Target = new ChoiceNode(
        [
            new ObjectNode(any), new ArrayNode(any, 0, int.MaxValue), StringNode.Any, NumberNode.Number,
            LiteralNode.Of("true"), LiteralNode.Of("false"), LiteralNode.Of("null"),
        ]);
        return any;
    }
}
