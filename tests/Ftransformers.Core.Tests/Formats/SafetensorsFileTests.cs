using System.Text;
using Ftransformers.Formats;
using Ftransformers.Tests.Support;
using NUnit.Framework;

namespace Ftransformers.Tests.Formats;

[TestFixture]
public class SafetensorsFileTests
{
    private static byte[] FileWithHeader(string header, int dataBytes)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BitConverter.GetBytes((ulong)json.Length).CopyTo(bytes, 0);
        json.CopyTo(bytes, 8);
        for (int i = 0; i < dataBytes; i++)
            bytes[8 + json.Length + i] = (byte)i;
        return bytes;
    }

    private static InvalidDataException OpenFails(byte[] bytes)
    {
        using var dir = new TempDirectory();
        string path = dir.File("model.safetensors");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path).Dispose())!;
        Assert.That(e.Message, Does.Contain(path));
        return e;
    }

    [Test]
    public void WrittenFile_ReadsBackTensorsAndMetadata_InPlace()
    {
        using var dir = new TempDirectory();
        var writer = new SafetensorsWriter();
        writer.AddF32("a", [2, 3], [1, 2, 3, 4, 5, 6]);
        writer.AddI32("b", [2], [7, -8]);
        writer.SetMetadata("format", "pt");
        writer.WriteTo(dir.File("x.safetensors"));

        using SafetensorsFile file = SafetensorsFile.Open(dir.File("x.safetensors"));
        Assert.That(file.Tensors.Keys, Is.EquivalentTo(new[] { "a", "b" }));
        Assert.That(file.Tensors["a"].Shape, Is.EqualTo(new long[] { 2, 3 }));
        Assert.That(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(file.GetBytes(file.Tensors["a"])).ToArray(), Is.EqualTo(new float[] { 1, 2, 3, 4, 5, 6 }));
        Assert.That(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(file.GetBytes(file.Tensors["b"])).ToArray(), Is.EqualTo(new[] { 7, -8 }));
        Assert.That(file.Metadata["format"], Is.EqualTo("pt"));
    }

    [Test]
    public void FileShorterThanHeaderLength_IsReportedTruncated()
    {
        var e = OpenFails([1, 2, 3]);
        Assert.That(e.Message, Does.Contain("truncated"));
    }

    [Test]
    public void HeaderLengthBeyondFile_IsReportedTruncated()
    {
        byte[] bytes = FileWithHeader("{}", 0);
        BitConverter.GetBytes(1000UL).CopyTo(bytes, 0);
        Assert.That(OpenFails(bytes).Message, Does.Contain("truncated"));
    }

    [Test]
    public void TruncatedData_NamesTheTensorWhoseBytesAreMissing()
    {
        byte[] full = FileWithHeader("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 16);
        var e = OpenFails(full[..^4]);
        Assert.That(e.Message, Does.Contain("'w'").And.Contain("outside the data section"));
    }

    [Test]
    public void MalformedHeaderJson_IsReported()
    {
        Assert.That(OpenFails(FileWithHeader("""{"w": {"dtype": """, 0)).Message, Does.Contain("not valid JSON"));
    }

    [Test]
    public void UnknownDtype_NamesTensorAndDtype()
    {
        var e = OpenFails(FileWithHeader("""{"w":{"dtype":"F4_E2M1","shape":[2],"data_offsets":[0,1]}}""", 1));
        Assert.That(e.Message, Does.Contain("'w'").And.Contain("F4_E2M1"));
    }

    [Test]
    public void ShapeDisagreeingWithByteCount_IsReported()
    {
        var e = OpenFails(FileWithHeader("""{"w":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,8]}}""", 8));
        Assert.That(e.Message, Does.Contain("'w'").And.Contain("needs 12 bytes"));
    }

    [Test]
    public void OverlappingTensors_AreReported()
    {
        var e = OpenFails(FileWithHeader("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12));
        Assert.That(e.Message, Does.Contain("overlap").And.Contain("'a'").And.Contain("'b'"));
    }

    [Test]
    public void NegativeDimension_IsReported()
    {
        var e = OpenFails(FileWithHeader("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4));
        Assert.That(e.Message, Does.Contain("non-negative"));
    }

    [Test]
    public void MissingFile_IsFileNotFound()
    {
        var e = Assert.Throws<FileNotFoundException>(() => SafetensorsFile.Open("/nonexistent/model.safetensors"));
        Assert.That(e!.Message, Does.Contain("/nonexistent/model.safetensors"));
    }
}
