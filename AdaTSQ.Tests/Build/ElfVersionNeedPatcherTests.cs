using System.Reflection;
using System.Runtime.InteropServices;
using AdaTSQ.Build;
using TorchSharp;

namespace AdaTSQ.Tests.Build;

/// <summary>
/// The libLibTorchSharp.so patch step, on copies of the real file from the NuGet package cache.
/// </summary>
[TestFixture]
[Platform("Linux")]
public class ElfVersionNeedPatcherTests
{
    private const string Glibcxx32 = "GLIBCXX_3.4.32";
    private string _dir = "";

    private static string PristineLibrary
    {
        get
        {
            var packageDir = typeof(ElfVersionNeedPatcherTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                .Single(a => a.Key == "TorchSharpPackageDir").Value!;
            return Path.Combine(packageDir, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        }
    }

    private static string OutputNativeDir => Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native");

    private static bool SystemLacksGlibcxx32
    {
        get
        {
            var system = ElfVersionNeedPatcher.FindSystemLibStdCxx();
            return system is not null && !ElfVersionNeedPatcher.ReadVersionDefinitions(system).Contains(Glibcxx32);
        }
    }

    [SetUp]
    public void SetUp()
    {
        Assert.That(File.Exists(PristineLibrary), Is.True, $"the TorchSharp package should be in the NuGet cache at {PristineLibrary}");
        _dir = Directory.CreateTempSubdirectory("adatsq-elf-").FullName;
    }

    [TearDown]
    public void TearDown()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    /// <summary>A copy of the pristine library, beside links to the libtorch files it needs (its RUNPATH is $ORIGIN).</summary>
    private string CopyWithDependencies()
    {
        foreach (var file in Directory.GetFiles(OutputNativeDir).Where(f => Path.GetFileName(f) != "libLibTorchSharp.so"))
            File.CreateSymbolicLink(Path.Combine(_dir, Path.GetFileName(file)), file);
        var copy = Path.Combine(_dir, "libLibTorchSharp.so");
        File.Copy(PristineLibrary, copy);
        return copy;
    }

    [Test]
    public void PristineLibraryNeedsGlibcxx32Strongly()
    {
        var need = ElfVersionNeedPatcher.ReadVersionNeeds(PristineLibrary).Single(n => n.Version == Glibcxx32);
        Assert.That(need.Library, Is.EqualTo("libstdc++.so.6"));
        Assert.That(need.IsWeak, Is.False);
    }

    [Test]
    public void PatchedCopyLoadsWhereThePristineOneDoesNot()
    {
        var copy = CopyWithDependencies();
        if (SystemLacksGlibcxx32)
        {
            var error = Assert.Throws<DllNotFoundException>(() => NativeLibrary.Free(NativeLibrary.Load(copy)))!;
            Assert.That(error.Message, Does.Contain(Glibcxx32), "the unpatched library should fail on the missing version");
        }

        Assert.That(ElfVersionNeedPatcher.Patch(copy, "libstdc++.so.6", [Glibcxx32]), Is.EqualTo(ElfPatchOutcome.Patched));

        Assert.That(ElfVersionNeedPatcher.ReadVersionNeeds(copy).Single(n => n.Version == Glibcxx32).IsWeak, Is.True);
        var handle = NativeLibrary.Load(copy);
        try
        {
            Assert.That(NativeLibrary.TryGetExport(handle, "THSTorch_manual_seed", out _), Is.True, "a LibTorchSharp export resolves");
        }
        finally
        {
            NativeLibrary.Free(handle);
        }
    }

    [Test]
    public void PatchChangesOnlyTheFlagAndIsIdempotent()
    {
        var copy = Path.Combine(_dir, "lib.so");
        File.Copy(PristineLibrary, copy);
        var before = File.ReadAllBytes(copy);

        ElfVersionNeedPatcher.Patch(copy, "libstdc++.so.6", [Glibcxx32]);
        var once = File.ReadAllBytes(copy);
        var outcome = ElfVersionNeedPatcher.Patch(copy, "libstdc++.so.6", [Glibcxx32]);
        var twice = File.ReadAllBytes(copy);

        Assert.That(outcome, Is.EqualTo(ElfPatchOutcome.AlreadyPatched));
        Assert.That(twice, Is.EqualTo(once));
        Assert.That(once.Length, Is.EqualTo(before.Length));
        var changed = Enumerable.Range(0, before.Length).Where(i => before[i] != once[i]).ToList();
        var flagOffset = ElfVersionNeedPatcher.ReadVersionNeeds(copy).Single(n => n.Version == Glibcxx32).FlagsOffset;
        Assert.That(changed, Is.EqualTo(new[] { (int)flagOffset }), "only the low byte of vna_flags changes");
        Assert.That(Directory.GetFiles(_dir), Is.EqualTo(new[] { copy }), "no temporary file is left behind");
    }

    [Test]
    public void PatchBreaksHardLinksInsteadOfWritingThroughThem()
    {
        var original = Path.Combine(_dir, "cache.so");
        var linked = Path.Combine(_dir, "output.so");
        File.Copy(PristineLibrary, original);
        Assert.That(Link(original, linked), Is.EqualTo(0), "hard link");

        ElfVersionNeedPatcher.Patch(linked, "libstdc++.so.6", [Glibcxx32]);

        Assert.That(ElfVersionNeedPatcher.ReadVersionNeeds(linked).Single(n => n.Version == Glibcxx32).IsWeak, Is.True);
        Assert.That(ElfVersionNeedPatcher.ReadVersionNeeds(original).Single(n => n.Version == Glibcxx32).IsWeak, Is.False,
            "the file the output was linked to (a package cache) is untouched");
    }

    [Test]
    public void ConcurrentPatchesOfOneFileLeaveAValidPatchedFile()
    {
        var copy = Path.Combine(_dir, "lib.so");
        File.Copy(PristineLibrary, copy);
        Parallel.For(0, 4, _ => ElfVersionNeedPatcher.Patch(copy, "libstdc++.so.6", [Glibcxx32]));
        Assert.That(ElfVersionNeedPatcher.ReadVersionNeeds(copy).Single(n => n.Version == Glibcxx32).IsWeak, Is.True);
        Assert.That(new FileInfo(copy).Length, Is.EqualTo(new FileInfo(PristineLibrary).Length));
    }

    [Test]
    public void VersionsTheFileDoesNotNeedAreNotRequired()
    {
        var copy = Path.Combine(_dir, "lib.so");
        File.Copy(PristineLibrary, copy);
        Assert.That(ElfVersionNeedPatcher.Patch(copy, "libstdc++.so.6", ["GLIBCXX_9.9.99"]), Is.EqualTo(ElfPatchOutcome.NotRequired));
        Assert.That(File.ReadAllBytes(copy), Is.EqualTo(File.ReadAllBytes(PristineLibrary)));
    }

    [Test]
    public void BuildOutputCopyWasPatchedByTheMsBuildStep()
    {
        Assume.That(SystemLacksGlibcxx32, "this system's libstdc++ defines GLIBCXX_3.4.32: the build step rightly skips the patch");
        var output = Path.Combine(OutputNativeDir, "libLibTorchSharp.so");
        Assert.That(ElfVersionNeedPatcher.ReadVersionNeeds(output).Single(n => n.Version == Glibcxx32).IsWeak, Is.True);
        Assert.That(ElfVersionNeedPatcher.ReadVersionNeeds(PristineLibrary).Single(n => n.Version == Glibcxx32).IsWeak, Is.False,
            "the NuGet cache copy is never patched");
        using var sum = torch.ones(3).sum();
        Assert.That(sum.item<float>(), Is.EqualTo(3f), "TorchSharp loads and computes");
    }

    [Test]
    public void NonElfFilesGetATypedErrorNamingTheFile()
    {
        var text = Path.Combine(_dir, "not-a-library.so");
        File.WriteAllText(text, "hello, this is not ELF at all, but it is long enough to have a header............");
        var error = Assert.Throws<ElfFormatException>(() => ElfVersionNeedPatcher.Patch(text, "libstdc++.so.6", [Glibcxx32]))!;
        Assert.That(error.Message, Does.Contain("not-a-library.so").And.Contain("magic"));

        var truncated = Path.Combine(_dir, "truncated.so");
        File.WriteAllBytes(truncated, File.ReadAllBytes(PristineLibrary).Take(4096).ToArray());
        var cut = Assert.Throws<ElfFormatException>(() => ElfVersionNeedPatcher.ReadVersionNeeds(truncated))!;
        Assert.That(cut.Message, Does.Contain("truncated.so").And.Contain("past the end"));
    }

    [DllImport("libc", EntryPoint = "link", SetLastError = true)]
    private static extern int Link(string existing, string created);
}
