namespace Ftransformers.Generation.Grammar;

/// <summary>
/// One request's place in its grammar: the mask of tokens allowed next, and the step past each sampled token. A mask
/// not yet cached is worked out in the background as soon as its token is accepted, so the walk overlaps the model's
/// forward pass; a cached one is taken at once (handing it to another thread would cost more than the lookup).
/// </summary>
internal sealed class GrammarConstraint
{
    private readonly TokenGrammar _grammar;
    private GrammarState _state;
    private Task<TokenMask> _next;

    /// <summary>Starts at the beginning of <paramref name="grammar"/>.</summary>
    public GrammarConstraint(TokenGrammar grammar)
    {
        _grammar = grammar;
        _state = GrammarState.Initial(grammar.Root);
        _next = Prepare(_state);
    }

    /// <summary>The tokens allowed next.</summary>
    public TokenMask Mask() => _next.GetAwaiter().GetResult();

    /// <summary>Moves past <paramref name="token"/>.</summary>
    /// <exception cref="InvalidOperationException">The grammar does not allow the token here (the mask was not applied).</exception>
    public void Accept(int token)
    {
        if (token == _grammar.Tokenizer.EosTokenId)
        {
            if (!_state.CanEnd)
                throw new InvalidOperationException("The end-of-sentence token came before the grammar was complete.");
            return;
        }
        _state = _grammar.Advance(_state, token) ?? throw new InvalidOperationException($"Token {token} does not fit the grammar here.");
        _next = Prepare(_state);
    }

    private Task<TokenMask> Prepare(GrammarState state) =>
        _grammar.Cached(state) is { } mask ? Task.FromResult(mask) : Task.Run(() => _grammar.Mask(state));
}
