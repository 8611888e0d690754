using Ftransformers.Generation;
using Ftransformers.Model;
using NUnit.Framework;
using static Ftransformers.Tests.Serving.ServingHarness;
using Ftransformers.Inference;
using Ftransformers.Serving;

namespace Ftransformers.Tests.Serving;

/// <summary>Many requests, a pool far too small for all of them, cancellations and a bounded queue.</summary>
[TestFixture]
public class ServingStressTests
{
    [Test]
    public async Task TwoHundredRequests_InASmallPool_CompleteExactly_OrAreCancelled_OrRejected_AndLeakNothing()
    {
        var random = new Random(2024);
        using DeepSeekV3Model reference = LoadModel("synthetic");
        var options = new InferenceSessionOptions
        {
            MaxTotalTokens = 160,
            KvCachePageSize = 4,
            ChunkedPrefillSize = 24,
            MaxRunningRequests = 8,
            MaxWaitingRequests = 170,
        };
        using InferenceSession session = Session("synthetic", options);

        // Shared prefixes (system prompts) so that the prefix cache, its locks and its eviction all take part.
        int[][] systems = [.. Enumerable.Range(0, 4).Select(_ => Tokens(random, random.Next(5, 30)))];
        var requests = Enumerable.Range(0, 200).Select(i =>
        {
            int[] prefix = random.Next(3) > 0 ? systems[random.Next(systems.Length)] : [];
            int[] prompt = [.. prefix, .. Tokens(random, random.Next(1, 40))];
            SamplingOptions sampling = random.Next(4) == 0 ? new SamplingOptions { Temperature = 1f, TopK = 20, Seed = i } : SamplingOptions.Greedy;
            // A fifth are cancelled: after a random number of tokens, or before any.
            int cancelAfter = random.Next(5) == 0 ? random.Next(0, 6) : -1;
            return (Request: Request(prompt, random.Next(1, 17), sampling), CancelAfter: cancelAfter);
        }).ToArray();

        // All are submitted, in order, while the loop is held: the first MaxWaitingRequests queue and the rest are
        // refused, and those to be cancelled before any token are cancelled while they wait.
        var cancels = requests.Select(_ => new CancellationTokenSource()).ToArray();
        var runs = new Task<Outcome>[requests.Length];
        using (await HoldEngine(session))
        {
            for (int i = 0; i < requests.Length; i++)
            {
                var (request, cancelAfter) = requests[i];
                CancellationTokenSource cancel = cancels[i];
                runs[i] = Run(session, request, cancel.Token, onChunk: n =>
                {
                    if (n == cancelAfter)
                        cancel.Cancel();
                });
            }
            foreach (int i in Enumerable.Range(0, requests.Length).Where(i => requests[i].CancelAfter == 0))
                await cancels[i].CancelAsync();
        }
        Outcome[] outcomes = await Task.WhenAll(runs);
        foreach (CancellationTokenSource cancel in cancels)
            cancel.Dispose();

        int completed = 0, cancelled = 0, rejected = 0;
        for (int i = 0; i < requests.Length; i++)
        {
            GenerationRequest request = requests[i].Request;
            Outcome outcome = outcomes[i];
            var solo = Exactness.Solo(reference, request.PromptTokens!, request.MaxTokens, request.Sampling);
            switch (outcome.Error)
            {
                case null:
                    completed++;
                    AssertEqualsSolo(outcome, solo, $"request {i}");
                    break;
                case OperationCanceledException:
                    cancelled++;
                    Assert.That(requests[i].CancelAfter, Is.GreaterThanOrEqualTo(0), $"request {i} was not cancelled by the test");
                    Assert.That(outcome.Tokens, Is.EqualTo(solo.Tokens.Take(outcome.Tokens.Length)), $"request {i}: what streamed before the cancellation");
                    break;
                case QueueFullException e:
                    rejected++;
                    Assert.That(e.Message, Does.Contain("MaxWaitingRequests"));
                    Assert.That(outcome.Tokens, Is.Empty);
                    break;
                default:
                    Assert.Fail($"request {i} failed: {outcome.Error}");
                    break;
            }
        }
        TestContext.Out.WriteLine($"completed {completed}, cancelled {cancelled}, rejected {rejected}; {session.GetStatistics()}");
        int queued = options.MaxWaitingRequests;
        int cancelledWhileQueued = requests.Take(queued).Count(r => r.CancelAfter == 0);
        Assert.That(rejected, Is.EqualTo(requests.Length - queued), "every request past the queue's bound is refused");
        Assert.That(outcomes.Skip(queued).Select(o => o.Error), Has.All.TypeOf<QueueFullException>());
        Assert.That(cancelled, Is.GreaterThanOrEqualTo(cancelledWhileQueued).And.GreaterThan(0));
        Assert.That(completed + cancelled, Is.EqualTo(queued));
        Assert.That(completed, Is.GreaterThanOrEqualTo(queued - requests.Take(queued).Count(r => r.CancelAfter >= 0)), "only requests the test cancels end early");
        SessionStatistics statistics = session.GetStatistics();
        Assert.That(statistics.Preemptions, Is.GreaterThan(0), "the pool was meant to run short");
        Assert.That(statistics.PrefixCacheHitTokens, Is.GreaterThan(0));
        Assert.That(statistics.PrefixCacheEvictedTokens, Is.GreaterThan(0));
        await AssertNoLeak(session);
    }

    private static int[] Tokens(Random random, int count) => Enumerable.Range(0, count).Select(_ => random.Next(2, 1024)).ToArray();
}
