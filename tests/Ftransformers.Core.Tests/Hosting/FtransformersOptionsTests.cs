using Ftransformers.Generation;
using Ftransformers.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using NUnit.Framework;
using Ftransformers.Serving;

namespace Ftransformers.Tests.Hosting;

[TestFixture]
public class FtransformersOptionsTests
{
    [Test]
    public void Defaults_NeedOnlyAModel()
    {
        Assert.That(new FtransformersOptions().Validate(), Has.Exactly(1).Contains("ModelPath"));
        Assert.That(new FtransformersOptions { ModelPath = "synthetic:tiny" }.Validate(), Is.Empty);
    }

    [TestCase(nameof(FtransformersOptions.Precision))]
    [TestCase(nameof(FtransformersOptions.CpuThreads))]
    [TestCase(nameof(FtransformersOptions.ChunkedPrefillSize))]
    [TestCase(nameof(FtransformersOptions.MaxTotalTokens))]
    [TestCase(nameof(FtransformersOptions.MaxRunningRequests))]
    [TestCase(nameof(FtransformersOptions.MaxWaitingRequests))]
    [TestCase(nameof(FtransformersOptions.ServedModelName))]
    [TestCase(nameof(FtransformersOptions.KvCacheDType))]
    [TestCase(nameof(FtransformersOptions.KvCachePageSize))]
    public void OutOfRangeValue_IsReported_NamingTheOption(string option)
    {
        var options = new FtransformersOptions { ModelPath = "synthetic:tiny" };
        switch (option)
        {
            case nameof(FtransformersOptions.Precision): options.Precision = "int3"; break;
            case nameof(FtransformersOptions.CpuThreads): options.CpuThreads = 0; break;
            case nameof(FtransformersOptions.ChunkedPrefillSize): options.ChunkedPrefillSize = 0; break;
            case nameof(FtransformersOptions.MaxTotalTokens): options.MaxTotalTokens = 0; break;
            case nameof(FtransformersOptions.MaxRunningRequests): options.MaxRunningRequests = 0; break;
            case nameof(FtransformersOptions.MaxWaitingRequests): options.MaxWaitingRequests = -1; break;
            case nameof(FtransformersOptions.ServedModelName): options.ServedModelName = " "; break;
            case nameof(FtransformersOptions.KvCacheDType): options.KvCacheDType = (Ftransformers.Memory.KvCacheDType)7; break;
            case nameof(FtransformersOptions.KvCachePageSize): options.KvCachePageSize = 0; break;
        }
        IReadOnlyList<string> errors = options.Validate();
        Assert.That(errors, Has.Count.EqualTo(1));
        Assert.That(errors[0], Does.StartWith(option));
    }

    // The host reports exactly what the session would refuse at load: one rule for both.
    [TestCase(0)]
    [TestCase(-3)]
    public void MaxWaitingRequests_TheSessionRefuses_IsRefusedAtStartUp(int waiting)
    {
        var options = new FtransformersOptions { ModelPath = "synthetic:tiny", MaxWaitingRequests = waiting };
        Assert.That(options.Validate().Single(), Does.StartWith("MaxWaitingRequests"));
        Assert.Throws<ArgumentOutOfRangeException>(options.ToSessionOptions().Validate);
    }

    [Test]
    public void ChunkedPrefill_AcceptsMinusOneToDisable_AndABudgetAboveThePool_AsTheSessionDoes()
    {
        // A step prefills no more than the free pages hold, so a larger budget is no error (the session's default of
        // 2048 tokens runs with any pool size).
        Assert.That(new FtransformersOptions { ModelPath = "m", ChunkedPrefillSize = -1 }.Validate(), Is.Empty);
        Assert.That(new FtransformersOptions { ModelPath = "m", ChunkedPrefillSize = 4096, MaxTotalTokens = 1024 }.Validate(), Is.Empty);
        Assert.DoesNotThrow(new InferenceSessionOptions { ChunkedPrefillSize = 4096, MaxTotalTokens = 1024 }.Validate);
    }

    [Test]
    public void ToSessionOptions_MapsEveryOption()
    {
        var options = new FtransformersOptions
        {
            ModelPath = "/models/v3", TokenizerPath = "/tok", Precision = "w8a8-int4", CpuThreads = 8, ChunkedPrefillSize = 512,
            MaxTotalTokens = 65536, MaxRunningRequests = 16, MaxWaitingRequests = 64, EnablePrefixCache = false,
            KvCacheDType = Ftransformers.Memory.KvCacheDType.BF16, KvCachePageSize = 64, PinThreads = false,
        };
        Assert.That(options.ToSessionOptions(), Is.EqualTo(new InferenceSessionOptions
        {
            Model = "/models/v3", Tokenizer = "/tok", Precision = Ftransformers.Model.Precision.W8A8Int4, CpuThreads = 8, ChunkedPrefillSize = 512,
            MaxTotalTokens = 65536, MaxRunningRequests = 16, MaxWaitingRequests = 64, EnablePrefixCache = false,
            KvCacheDType = Ftransformers.Memory.KvCacheDType.BF16, KvCachePageSize = 64, PinThreads = false,
        }));
    }

    [Test]
    public void ToSessionOptions_KeepsSessionDefaultsForUnsetOptions_AndMinusOneTurnsChunkingOff()
    {
        var options = new FtransformersOptions { ModelPath = "synthetic:tiny", Precision = "auto" };
        Assert.That(options.ToSessionOptions(), Is.EqualTo(new InferenceSessionOptions { Model = "synthetic:tiny" }));
        options.ChunkedPrefillSize = -1;
        Assert.That(options.ToSessionOptions().ChunkedPrefillSize, Is.EqualTo(-1));
        Assert.That(options.ToSessionOptions().PrefillTokensPerStep, Is.EqualTo(int.MaxValue));
    }

    [TestCase("synthetic:tiny", null, "synthetic:tiny")]
    [TestCase("/models/DeepSeek-V3/", null, "DeepSeek-V3")]
    [TestCase("/models/DeepSeek-V3", "deepseek-v3", "deepseek-v3")]
    public void EffectiveModelName_PrefersTheServedName(string path, string? served, string expected)
    {
        Assert.That(new FtransformersOptions { ModelPath = path, ServedModelName = served }.EffectiveModelName, Is.EqualTo(expected));
    }

    [Test]
    public void AddFtransformers_InvalidOptions_FailResolutionNamingEachOption()
    {
        var services = new ServiceCollection();
        services.AddFtransformers(o => { o.CpuThreads = 0; o.Precision = "int3"; });
        using ServiceProvider provider = services.BuildServiceProvider();

        var e = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IInferenceSession>());
        Assert.That(e!.Failures, Has.Some.StartsWith("ModelPath").And.Some.StartsWith("CpuThreads").And.Some.StartsWith("Precision"));
    }

    [Test]
    public void AddFtransformers_ValidatesAtStartUp()
    {
        var services = new ServiceCollection();
        services.AddFtransformers(o => o.MaxTotalTokens = -5);
        using ServiceProvider provider = services.BuildServiceProvider();

        // What a host runs before it starts (ValidateOnStart registers it).
        var startup = provider.GetRequiredService<IStartupValidator>();
        var e = Assert.Throws<OptionsValidationException>(startup.Validate);
        Assert.That(e!.Message, Does.Contain("MaxTotalTokens"));
    }

    [Test]
    public void AddFtransformers_BindsAConfigurationSection()
    {
        IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Ftransformers:ModelPath"] = "synthetic:tiny",
            ["Ftransformers:ServedModelName"] = "tiny",
            ["Ftransformers:ChunkedPrefillSize"] = "256",
            ["Ftransformers:EnablePrefixCache"] = "false",
        }).Build();
        var services = new ServiceCollection();
        services.AddFtransformers(configuration.GetSection(FtransformersOptions.SectionName));
        using ServiceProvider provider = services.BuildServiceProvider();

        FtransformersOptions options = provider.GetRequiredService<IOptions<FtransformersOptions>>().Value;
        Assert.That((options.ModelPath, options.ServedModelName, options.ChunkedPrefillSize, options.EnablePrefixCache), Is.EqualTo(("synthetic:tiny", "tiny", (int?)256, false)));
    }

    [Test]
    public void AddFtransformers_RegistersOneInstrumentedSession()
    {
        var services = new ServiceCollection();
        services.AddFtransformers(o => o.ModelPath = "synthetic:tiny");
        using ServiceProvider provider = services.BuildServiceProvider();
        IInferenceSession session = provider.GetRequiredService<IInferenceSession>();
        Assert.That(provider.GetRequiredService<IInferenceSession>(), Is.SameAs(session));
        Assert.That(session, Is.InstanceOf<InstrumentedInferenceSession>());
        Assert.That(((InstrumentedInferenceSession)session).Inner, Is.InstanceOf<InferenceSession>());
        Assert.That(session.Config.VocabSize, Is.EqualTo(Ftransformers.Model.SyntheticModels.Tiny.VocabSize));
    }
}
