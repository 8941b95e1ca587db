// Patches the symbol-version requirements of an ELF shared library so that it loads against an
// older libstdc++ than the one it was linked with.
//
// Why: TorchSharp 0.107.0's libLibTorchSharp.so was linked with GCC 13 and requires the version
// GLIBCXX_3.4.32 of libstdc++.so.6. GCC 12's libstdc++ (Debian 12, Ubuntu 22.04) stops at 3.4.30,
// so the dynamic loader refuses the library. The only symbol bound to that version is
// std::ios_base_library_init, a bare reference that GCC 13's <iostream> emits and that is never
// called (no relocation uses it). Marking the version requirement weak (VER_FLG_WEAK in vna_flags
// of the .gnu.version_r entry) makes the loader accept its absence; nothing else changes.
//
// This file is compiled twice:
//  * by MSBuild's RoslynCodeTaskFactory (AdaTSQ.Core.targets), which includes the Task class
//    below, so every app that references AdaTSQ.Core gets its output copy patched at build time;
//  * by AdaTSQ.Tests with ADATSQ_NO_MSBUILD_TASK defined, to test the patcher on a real file.
// It must therefore depend on nothing but the base class library, as far as netstandard2.0 has it
// (RoslynCodeTaskFactory compiles against netstandard2.0).

#nullable enable

using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace AdaTSQ.Build
{
    /// <summary>What <see cref="ElfVersionNeedPatcher.Patch"/> did to a file.</summary>
    public enum ElfPatchOutcome
    {
        /// <summary>At least one version requirement was marked weak and the file rewritten.</summary>
        Patched,
        /// <summary>Every requested requirement was weak already: the file was not touched.</summary>
        AlreadyPatched,
        /// <summary>The file requires none of the requested versions: the file was not touched.</summary>
        NotRequired,
    }

    /// <summary>The error thrown for a file that is not a well-formed 64-bit little-endian ELF object.</summary>
    public sealed class ElfFormatException : Exception
    {
        /// <summary>Creates the exception.</summary>
        public ElfFormatException(string path, string problem)
            : base("'" + path + "' is not a patchable ELF file: " + problem)
        {
            FilePath = path;
        }

        /// <summary>The file that could not be read.</summary>
        public string FilePath { get; }
    }

    /// <summary>One entry of an ELF file's version-needs section (.gnu.version_r).</summary>
    public sealed class ElfVersionNeed
    {
        /// <summary>Creates an entry.</summary>
        public ElfVersionNeed(string library, string version, ushort flags, long flagsOffset)
        {
            Library = library;
            Version = version;
            Flags = flags;
            FlagsOffset = flagsOffset;
        }

        /// <summary>The needed library, e.g. <c>libstdc++.so.6</c>.</summary>
        public string Library { get; }
        /// <summary>The needed version, e.g. <c>GLIBCXX_3.4.32</c>.</summary>
        public string Version { get; }
        /// <summary>The vna_flags field (2 = VER_FLG_WEAK).</summary>
        public ushort Flags { get; }
        /// <summary>True when the requirement is weak (the loader accepts its absence).</summary>
        public bool IsWeak => (Flags & ElfVersionNeedPatcher.VerFlagWeak) != 0;
        /// <summary>File offset of the vna_flags field.</summary>
        public long FlagsOffset { get; }
    }

    /// <summary>
    /// Reads version requirements (SHT_GNU_verneed) and definitions (SHT_GNU_verdef) of 64-bit
    /// little-endian ELF files, and marks chosen requirements weak.
    /// </summary>
    public static class ElfVersionNeedPatcher
    {
        /// <summary>The VER_FLG_WEAK bit of vna_flags.</summary>
        public const ushort VerFlagWeak = 2;

        private const uint ShtGnuVerdef = 0x6ffffffd;
        private const uint ShtGnuVerneed = 0x6ffffffe;

        /// <summary>Lists the version requirements of an ELF file.</summary>
        public static IReadOnlyList<ElfVersionNeed> ReadVersionNeeds(string path)
            => ReadVersionNeeds(File.ReadAllBytes(path), path);

        /// <summary>Lists the version names an ELF file defines (e.g. every GLIBCXX_* of libstdc++).</summary>
        public static ISet<string> ReadVersionDefinitions(string path)
        {
            byte[] image = File.ReadAllBytes(path);
            var names = new HashSet<string>(StringComparer.Ordinal);
            var sections = Sections(image, path);
            foreach (var section in sections)
            {
                if (section.Type != ShtGnuVerdef) continue;
                var strtab = StringTable(sections, path, section.Link);
                long offset = section.Offset;
                for (uint i = 0; i < section.Info; i++)
                {
                    Check(image, path, offset, 20, "verdef entry");
                    ushort count = U16(image, offset + 6);
                    uint aux = U32(image, offset + 12);
                    uint next = U32(image, offset + 16);
                    long auxOffset = offset + aux;
                    for (int j = 0; j < count; j++)
                    {
                        Check(image, path, auxOffset, 8, "verdaux entry");
                        names.Add(ReadString(image, path, strtab, U32(image, auxOffset)));
                        uint auxNext = U32(image, auxOffset + 4);
                        if (auxNext == 0) break;
                        auxOffset += auxNext;
                    }
                    if (next == 0) break;
                    offset += next;
                }
            }
            return names;
        }

        /// <summary>
        /// Marks weak every requirement on <paramref name="library"/> whose version is in
        /// <paramref name="versions"/>. The file is replaced atomically (written beside it, then
        /// renamed over it), so concurrent builds never see a half-written file and a hard link to a
        /// package cache is broken rather than modified. Patching a patched file changes nothing.
        /// </summary>
        public static ElfPatchOutcome Patch(string path, string library, ICollection<string> versions)
        {
            byte[] image = File.ReadAllBytes(path);
            bool found = false, changed = false;
            foreach (var need in ReadVersionNeeds(image, path))
            {
                if (need.Library != library || !versions.Contains(need.Version)) continue;
                found = true;
                if (need.IsWeak) continue;
                ushort flags = (ushort)(need.Flags | VerFlagWeak);
                image[need.FlagsOffset] = (byte)(flags & 0xff);
                image[need.FlagsOffset + 1] = (byte)(flags >> 8);
                changed = true;
            }
            if (!found) return ElfPatchOutcome.NotRequired;
            if (!changed) return ElfPatchOutcome.AlreadyPatched;
            ReplaceAtomically(path, image);
            return ElfPatchOutcome.Patched;
        }

        /// <summary>
        /// Finds the libstdc++.so.6 the dynamic loader would use on this machine, from the usual
        /// library directories; null when none is found.
        /// </summary>
        public static string? FindSystemLibStdCxx()
        {
            string[] dirs =
            {
                "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
                "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
            };
            foreach (var dir in dirs)
            {
                string candidate = Path.Combine(dir, "libstdc++.so.6");
                if (File.Exists(candidate)) return candidate;
            }
            return null;
        }

        private static IReadOnlyList<ElfVersionNeed> ReadVersionNeeds(byte[] image, string path)
        {
            var result = new List<ElfVersionNeed>();
            var sections = Sections(image, path);
            foreach (var section in sections)
            {
                if (section.Type != ShtGnuVerneed) continue;
                var strtab = StringTable(sections, path, section.Link);
                long offset = section.Offset;
                for (uint i = 0; i < section.Info; i++)
                {
                    Check(image, path, offset, 16, "verneed entry");
                    ushort count = U16(image, offset + 2);
                    string file = ReadString(image, path, strtab, U32(image, offset + 4));
                    uint aux = U32(image, offset + 8);
                    uint next = U32(image, offset + 12);
                    long auxOffset = offset + aux;
                    for (int j = 0; j < count; j++)
                    {
                        Check(image, path, auxOffset, 16, "vernaux entry");
                        ushort flags = U16(image, auxOffset + 4);
                        string name = ReadString(image, path, strtab, U32(image, auxOffset + 8));
                        result.Add(new ElfVersionNeed(file, name, flags, auxOffset + 4));
                        uint auxNext = U32(image, auxOffset + 12);
                        if (auxNext == 0) break;
                        auxOffset += auxNext;
                    }
                    if (next == 0) break;
                    offset += next;
                }
            }
            return result;
        }

        private readonly struct Section
        {
            public Section(uint type, long offset, long size, uint link, uint info)
            {
                Type = type; Offset = offset; Size = size; Link = link; Info = info;
            }
            public uint Type { get; }
            public long Offset { get; }
            public long Size { get; }
            public uint Link { get; }
            public uint Info { get; }
        }

        private static List<Section> Sections(byte[] image, string path)
        {
            if (image.Length < 64 || image[0] != 0x7f || image[1] != (byte)'E' || image[2] != (byte)'L' || image[3] != (byte)'F')
                throw new ElfFormatException(path, "no ELF magic number");
            if (image[4] != 2) throw new ElfFormatException(path, "not a 64-bit ELF file (EI_CLASS=" + image[4] + ")");
            if (image[5] != 1) throw new ElfFormatException(path, "not a little-endian ELF file (EI_DATA=" + image[5] + ")");
            long shoff = (long)U64(image, 0x28);
            ushort shentsize = U16(image, 0x3A);
            ushort shnum = U16(image, 0x3C);
            if (shoff == 0 || shnum == 0) throw new ElfFormatException(path, "it has no section headers");
            if (shentsize < 64) throw new ElfFormatException(path, "section header size " + shentsize + " < 64");
            var sections = new List<Section>(shnum);
            for (int i = 0; i < shnum; i++)
            {
                long h = shoff + (long)i * shentsize;
                Check(image, path, h, 64, "section header " + i);
                var s = new Section(U32(image, h + 4), (long)U64(image, h + 24), (long)U64(image, h + 32), U32(image, h + 40), U32(image, h + 44));
                if (s.Type != 8 /* SHT_NOBITS */ && s.Size > 0) Check(image, path, s.Offset, s.Size, "section " + i);
                sections.Add(s);
            }
            return sections;
        }

        private static Section StringTable(List<Section> sections, string path, uint index)
        {
            if (index >= sections.Count) throw new ElfFormatException(path, "string table index " + index + " out of range");
            return sections[(int)index];
        }

        private static string ReadString(byte[] image, string path, Section strtab, uint offset)
        {
            long start = strtab.Offset + offset;
            if (offset >= strtab.Size) throw new ElfFormatException(path, "string offset " + offset + " outside the string table");
            long end = start;
            long limit = strtab.Offset + strtab.Size;
            while (end < limit && image[end] != 0) end++;
            return Encoding.ASCII.GetString(image, (int)start, (int)(end - start));
        }

        private static void Check(byte[] image, string path, long offset, long length, string what)
        {
            if (offset < 0 || length < 0 || offset + length > image.Length)
                throw new ElfFormatException(path, what + " at offset " + offset + " (+" + length + ") runs past the end of the file (" + image.Length + " bytes)");
        }

        private static ushort U16(byte[] b, long o) => (ushort)(b[o] | (b[o + 1] << 8));
        private static uint U32(byte[] b, long o) => (uint)(b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24));
        private static ulong U64(byte[] b, long o) => U32(b, o) | ((ulong)U32(b, o + 4) << 32);

        private static void ReplaceAtomically(string path, byte[] image)
        {
            string full = Path.GetFullPath(path);
            string dir = Path.GetDirectoryName(full) ?? ".";
            string temp = Path.Combine(dir, "." + Path.GetFileName(full) + "." + Guid.NewGuid().ToString("N") + ".tmp");
            try
            {
                // Copy first so the new file keeps the original's permissions, then overwrite its bytes
                // and rename it over the original (File.Replace is rename(2) on Unix: atomic).
                File.Copy(full, temp);
                using (var stream = new FileStream(temp, FileMode.Open, FileAccess.Write))
                {
                    stream.Write(image, 0, image.Length);
                    stream.SetLength(image.Length);
                }
                File.SetLastWriteTimeUtc(temp, File.GetLastWriteTimeUtc(full));
                File.Replace(temp, full, null);
            }
            finally
            {
                if (File.Exists(temp)) File.Delete(temp);
            }
        }
    }

#if !ADATSQ_NO_MSBUILD_TASK
    /// <summary>
    /// MSBuild task: in every given file, marks weak the requirements on libstdc++.so.6 whose
    /// versions the system's libstdc++ does not define (from the given candidate list).
    /// </summary>
    public sealed class WeakenMissingLibStdCxxVersions : Microsoft.Build.Utilities.Task
    {
        /// <summary>The libraries to patch (copies in the build or publish output).</summary>
        [Microsoft.Build.Framework.Required]
        public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();

        /// <summary>Version names that may be weakened, separated by ';' (default GLIBCXX_3.4.32).</summary>
        public string Versions { get; set; } = "GLIBCXX_3.4.32";

        /// <summary>The libstdc++ to compare with; empty to find the system's.</summary>
        public string LibStdCxx { get; set; } = "";

        /// <inheritdoc />
        public override bool Execute()
        {
            string? system = string.IsNullOrEmpty(LibStdCxx) ? ElfVersionNeedPatcher.FindSystemLibStdCxx() : LibStdCxx;
            if (system is null || !File.Exists(system))
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, "AdaTSQ: no system libstdc++.so.6 found; libLibTorchSharp.so left as it is.");
                return true;
            }
            var defined = ElfVersionNeedPatcher.ReadVersionDefinitions(system);
            var missing = new List<string>();
            foreach (var v in Versions.Split(new[] { ';', ',' }, StringSplitOptions.RemoveEmptyEntries))
            {
                string name = v.Trim();
                if (name.Length > 0 && !defined.Contains(name)) missing.Add(name);
            }
            if (missing.Count == 0)
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, "AdaTSQ: " + system + " defines every required version; nothing to patch.");
                return true;
            }
            foreach (var item in Files)
            {
                string file = item.ItemSpec;
                if (!File.Exists(file)) continue;
                try
                {
                    var outcome = ElfVersionNeedPatcher.Patch(file, "libstdc++.so.6", missing);
                    var importance = outcome == ElfPatchOutcome.Patched ? Microsoft.Build.Framework.MessageImportance.High : Microsoft.Build.Framework.MessageImportance.Low;
                    Log.LogMessage(importance, "AdaTSQ: " + file + ": " + outcome + " (weak: " + string.Join(", ", missing) + "; " + system + " lacks them).");
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is ElfFormatException)
                {
                    Log.LogError("AdaTSQ: could not patch " + file + ": " + e.Message);
                }
            }
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
