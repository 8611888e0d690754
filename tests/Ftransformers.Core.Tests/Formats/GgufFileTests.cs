using System.Buffers.Binary;
using System.Text;
using Ftransformers.Formats;
using Ftransformers.Memory;
using Ftransformers.Tests.Support;
using NUnit.Framework;

namespace Ftransformers.Tests.Formats;

[TestFixture]
public class GgufFileTests
{
    private static byte[] Bytes(int count, int seed) => [.. Enumerable.Range(0, count).Select(i => (byte)(i * 31 + seed))];

    private static GgufWriter Sample() => new GgufWriter()
        .Add("general.architecture", "deepseek2")
        .Add("deepseek2.block_count", 3u)
        .Add("deepseek2.rope.freq_base", 10000f)
        .Add("tokenizer.ggml.add_bos_token", true)
        .Add("u8", GgufValueType.UInt8, (byte)200).Add("i8", GgufValueType.Int8, (sbyte)-5)
        .Add("u16", GgufValueType.UInt16, (ushort)60000).Add("i16", GgufValueType.Int16, (short)-3000)
        .Add("i32", GgufValueType.Int32, -7).Add("u64", GgufValueType.UInt64, ulong.MaxValue).Add("i64", GgufValueType.Int64, long.MinValue)
        .Add("f64", GgufValueType.Float64, Math.PI)
        .Add("tokenizer.ggml.tokens", GgufValueType.Array, new[] { "<｜begin▁of▁sentence｜>", "a", "日本" }, GgufValueType.String)
        .Add("nested", GgufValueType.Array, new object[]
        {
            new GgufValue(GgufValueType.Array, new object[] { 1, 2 }, GgufValueType.Int32), new GgufValue(GgufValueType.Array, new object[] { 3 }, GgufValueType.Int32),
        }, GgufValueType.Array)
        .AddTensor("token_embd.weight", GgmlType.F32, [4, 2], Bytes(32, 1))
        .AddTensor("blk.0.attn_q_a.weight", GgmlType.Q8_0, [64, 3], Bytes(3 * 2 * 34, 2))
        .AddTensor("blk.0.ffn_down_exps.weight", GgmlType.Q4_K, [256, 2, 2], Bytes(4 * 144, 3));

    private static GgufFile Read(byte[] bytes) => GgufFile.FromImages("test.gguf", [PinnedArray<byte>.CopyOf(bytes)]);

    [Test]
    public void WhatTheWriterWrites_TheReaderReads([Values(32, 64, 4096)] int alignment)
    {
        using GgufFile file = Read(Sample().Add("general.alignment", (uint)alignment).ToArray());
        Assert.That(file.Version, Is.EqualTo(3));
        Assert.That(file.Metadata["general.architecture"].AsString(), Is.EqualTo("deepseek2"));
        Assert.That(file.Metadata["deepseek2.block_count"].AsInt64(), Is.EqualTo(3));
        Assert.That(file.Metadata["deepseek2.rope.freq_base"].AsDouble(), Is.EqualTo(10000));
        Assert.That(file.Metadata["tokenizer.ggml.add_bos_token"].AsBool(), Is.True);
        Assert.That((file.Metadata["u8"].AsInt64(), file.Metadata["i8"].AsInt64(), file.Metadata["u16"].AsInt64(), file.Metadata["i16"].AsInt64()), Is.EqualTo((200, -5, 60000, -3000)));
        Assert.That((file.Metadata["i32"].AsInt64(), file.Metadata["i64"].AsInt64()), Is.EqualTo((-7, long.MinValue)));
        Assert.That(file.Metadata["u64"].Value, Is.EqualTo(ulong.MaxValue));
        Assert.That(file.Metadata["f64"].AsDouble(), Is.EqualTo(Math.PI));
        Assert.That(file.Metadata["tokenizer.ggml.tokens"].AsArray(), Is.EqualTo(new[] { "<｜begin▁of▁sentence｜>", "a", "日本" }));
        Assert.That(file.Metadata["nested"].AsArray().Select(a => ((object[])a).Length), Is.EqualTo(new[] { 2, 1 }));

        GgufTensor experts = file.Tensors["blk.0.ffn_down_exps.weight"];
        Assert.That((experts.Type, experts.Dimensions, experts.ByteLength, experts.ElementCount), Is.EqualTo((GgmlType.Q4_K, new long[] { 256, 2, 2 }, 576L, 1024L)));
        Assert.That(file.GetBytes(experts).ToArray(), Is.EqualTo(Bytes(576, 3)));
        Assert.That(file.GetBytes(file.Tensors["token_embd.weight"]).ToArray(), Is.EqualTo(Bytes(32, 1)));
        Assert.That(file.Tensors.Values.Select(t => t.Offset % alignment), Is.All.Zero);
    }

    [Test]
    public void EveryTruncation_IsAClearErrorNeverACrash()
    {
        byte[] whole = Sample().ToArray();
        for (int length = 0; length < whole.Length; length++)
        {
            var error = Assert.Throws<InvalidDataException>(() => Read(whole[..length]).Dispose(), $"{length} bytes")!;
            Assert.That(error.Message, Does.StartWith("test.gguf: "), $"{length} bytes");
        }
    }

    [Test]
    public void RandomCorruptions_AreClearErrorsOrReadInBounds()
    {
        byte[] whole = Sample().ToArray();
        var random = new Random(7);
        for (int trial = 0; trial < 2000; trial++)
        {
            byte[] bytes = (byte[])whole.Clone();
            for (int k = 0; k < 3; k++)
                bytes[random.Next(Math.Min(bytes.Length, 700))] = (byte)random.Next(256);
            try
            {
                using GgufFile file = Read(bytes);
                foreach (GgufTensor tensor in file.Tensors.Values)
                    Assert.That(file.GetBytes(tensor).Length, Is.EqualTo(tensor.ByteLength));
            }
            catch (InvalidDataException)
            {
                // refused, with a message: what a corrupt file must get
            }
        }
    }

    /// <summary>A header written field by field, to say things the writer never would.</summary>
    private sealed class RawHeader
    {
        private readonly MemoryStream _stream = new();

        public RawHeader U32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); _stream.Write(b); return this; }
        public RawHeader U64(ulong v) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, v); _stream.Write(b); return this; }
        public RawHeader Str(string s) { byte[] b = Encoding.UTF8.GetBytes(s); U64((ulong)b.Length); _stream.Write(b); return this; }
        public RawHeader Raw(params byte[] b) { _stream.Write(b); return this; }
        public RawHeader Start(ulong tensors, ulong metadata) => U32(GgufFile.Magic).U32(3).U64(tensors).U64(metadata);
        public RawHeader Tensor(string name, ulong[] dims, uint type, ulong offset)
        {
            Str(name).U32((uint)dims.Length);
            foreach (ulong d in dims)
                U64(d);
            return U32(type).U64(offset);
        }
        public byte[] WithData(int dataBytes)
        {
            long start = (_stream.Length + 31) / 32 * 32;
            var file = new byte[start + dataBytes];
            _stream.ToArray().CopyTo(file, 0);
            return file;
        }
    }

    private static IEnumerable<TestCaseData> Malformed()
    {
        yield return new TestCaseData(new RawHeader().U32(0x12345678).U32(3).U64(0).U64(0).WithData(0), "not a GGUF file").SetName("BadMagic");
        yield return new TestCaseData(new RawHeader().U32(GgufFile.Magic).U32(1).U64(0).U64(0).WithData(0), "version 1 is not supported").SetName("Version1");
        yield return new TestCaseData(new RawHeader().U32(GgufFile.Magic).U32(0x03000000).U64(0).U64(0).WithData(0), "big-endian").SetName("BigEndian");
        yield return new TestCaseData(new RawHeader().Start(0, ulong.MaxValue).WithData(0), "metadata count").SetName("HugeMetadataCount");
        yield return new TestCaseData(new RawHeader().Start(ulong.MaxValue / 2, 0).WithData(0), "tensor count").SetName("HugeTensorCount");
        yield return new TestCaseData(new RawHeader().Start(0, 1).U64(1L << 40).WithData(16), "claims 1099511627776 bytes").SetName("HugeString");
        yield return new TestCaseData(new RawHeader().Start(0, 1).Str("k").U32(99).U32(0).WithData(0), "value type 99").SetName("UnknownValueType");
        yield return new TestCaseData(new RawHeader().Start(0, 1).Str("k").U32(9).U32(8).U64(1L << 50).WithData(0), "claims 1125899906842624 elements").SetName("HugeArray");
        yield return new TestCaseData(new RawHeader().Start(0, 2).Str("k").U32(7).Raw(1).Str("k").U32(7).Raw(0).WithData(0), "appears twice").SetName("DuplicateKey");
        yield return new TestCaseData(new RawHeader().Start(0, 1).Str("k").U32(7).Raw(2).WithData(0), "not 0 or 1").SetName("BadBool");
        yield return new TestCaseData(new RawHeader().Start(0, 1).Str("general.alignment").U32(4).U32(24).WithData(0), "power of two").SetName("BadAlignment");
        yield return new TestCaseData(new RawHeader().Start(1, 0).Tensor("w", [32], 31, 0).WithData(64), "tensor 'w' has ggml type 31").SetName("UnknownTensorType");
        yield return new TestCaseData(new RawHeader().Start(1, 0).Tensor("w", [33], 8, 0).WithData(64), "not a multiple of Q8_0's blocks of 32").SetName("PartialBlock");
        yield return new TestCaseData(new RawHeader().Start(1, 0).Tensor("w", [1, 1, 1, 1, 1], 0, 0).WithData(64), "5 dimensions").SetName("FiveDimensions");
        yield return new TestCaseData(new RawHeader().Start(1, 0).Tensor("w", [0], 0, 0).WithData(64), "dimension 0 of size 0").SetName("ZeroDimension");
        yield return new TestCaseData(new RawHeader().Start(1, 0).Tensor("w", [16], 0, 8).WithData(128), "not a multiple of the alignment 32").SetName("MisalignedOffset");
        yield return new TestCaseData(new RawHeader().Start(1, 0).Tensor("w", [64], 0, 0).WithData(100), "tensor 'w' (256 bytes at data offset 0) runs past the end").SetName("DataPastTheEnd");
        yield return new TestCaseData(new RawHeader().Start(1, 0).Tensor("w", [1L << 62, 1L << 62], 0, 0).WithData(0), "larger than any file").SetName("OverflowingShape");
        yield return new TestCaseData(new RawHeader().Start(2, 0).Tensor("a", [16], 0, 0).Tensor("b", [16], 0, 32).WithData(128), "overlap").SetName("Overlap");
        yield return new TestCaseData(new RawHeader().Start(1, 1).Str("split.count").U32(4).U32(3).Tensor("w", [8], 0, 0).WithData(32), "'split.count' is 3").SetName("SplitCountWithoutSplitName");
    }

    [TestCaseSource(nameof(Malformed))]
    public void AMalformedHeader_IsRefusedSayingWhat(byte[] bytes, string message)
    {
        var error = Assert.Throws<InvalidDataException>(() => Read(bytes).Dispose())!;
        Assert.That(error.Message, Does.Contain(message));
    }

    [Test]
    public void ASplitSet_IsOpenedThroughItsFirstFile()
    {
        using var folder = new TempDirectory();
        string Part(int n) => folder.File($"model-{n:D5}-of-00003.gguf");
        for (int n = 1; n <= 3; n++)
        {
            var writer = new GgufWriter().Add("split.no", GgufValueType.UInt16, (ushort)(n - 1)).Add("split.count", GgufValueType.UInt16, (ushort)3);
            if (n == 1)
                writer.Add("general.architecture", "deepseek2");
            writer.AddTensor($"blk.{n}.w", GgmlType.F32, [8], Bytes(32, n)).Save(Part(n));
        }
        using (GgufFile set = GgufFile.Open(Part(1)))
        {
            Assert.That(set.PartCount, Is.EqualTo(3));
            Assert.That(set.Metadata["general.architecture"].AsString(), Is.EqualTo("deepseek2"));
            for (int n = 1; n <= 3; n++)
                Assert.That(set.GetBytes(set.Tensors[$"blk.{n}.w"]).ToArray(), Is.EqualTo(Bytes(32, n)));
        }
        Assert.That(Assert.Throws<InvalidDataException>(() => GgufFile.Open(Part(2)))!.Message, Does.Contain("model-00001-of-00003.gguf"));
        File.Delete(Part(3));
        Assert.That(Assert.Throws<FileNotFoundException>(() => GgufFile.Open(Part(1)))!.Message, Does.Contain("model-00003-of-00003.gguf"));
    }

    [Test]
    public void AMissingFile_IsNamed()
    {
        Assert.That(Assert.Throws<FileNotFoundException>(() => GgufFile.Open("/nonexistent/model.gguf"))!.Message, Does.Contain("/nonexistent/model.gguf"));
    }
}
