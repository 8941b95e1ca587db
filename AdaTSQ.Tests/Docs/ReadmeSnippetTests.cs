using System.Text.RegularExpressions;

namespace AdaTSQ.Tests.Docs;

/// <summary>
/// README.md's C# cannot drift from compiled code: every <c>```csharp</c> block of the README must equal a marked
/// region of a compiled file, every marked region must be shown in the README, and the line just above each block
/// must link the file the region is in.
/// <para>
/// A region starts with a line <c>// snippet: name</c> and ends with <c>// end snippet</c>. It may come in several
/// parts with the same name in one file (the using directives at the top, the code in a method): the parts are joined
/// with one blank line, in file order. Blocks and regions are compared line by line after removing their common
/// indentation (each part's own) and trailing white space. Regions live in <see cref="SnippetFolders"/>; a file
/// there that holds a region may not have a using directive outside its regions, so that a snippet compiles as shown.
/// </para>
/// </summary>
public partial class ReadmeSnippetTests
{
    /// <summary>The folders (relative to the repository root) whose .cs files hold the README's snippets.</summary>
    internal static readonly string[] SnippetFolders = ["AdaTSQ.Samples/Quickstart", "AdaTSQ.Tests/Docs"];

    internal const string StartMarker = "// snippet:";
    internal const string EndMarker = "// end snippet";

    /// <summary>A marked region: its name, the file it is in (relative to the repository root, with /), its lines (parts joined).</summary>
    internal sealed record Snippet(string Name, string File, IReadOnlyList<string> Lines);

    /// <summary>A <c>```csharp</c> block of the README: the line of its opening fence (1-based), its lines, the nearest non-blank line above it.</summary>
    internal sealed record ReadmeBlock(int Line, IReadOnlyList<string> Lines, string Above);

    [GeneratedRegex(@"^using\s+(static\s+)?[A-Za-z_][\w.]*(\s*=\s*[\w.<>, ]+)?\s*;")]
    private static partial Regex UsingDirective();

    [Test]
    public void EveryReadmeBlockIsACompiledSnippetAndEverySnippetIsInTheReadme()
    {
        string root = Data.IdxFileTests.RepositoryRoot();
        var (snippets, problems) = ReadSnippets(root);
        Assert.That(snippets, Is.Not.Empty, $"no snippet found in {string.Join(", ", SnippetFolders)}");
        problems.AddRange(Compare(File.ReadAllText(Path.Combine(root, "README.md")), snippets));
        Assert.That(problems, Is.Empty, string.Join(Environment.NewLine, problems));
    }

    [Test]
    public void AnEditedReadmeBlockIsReported()
    {
        string root = Data.IdxFileTests.RepositoryRoot();
        var (snippets, _) = ReadSnippets(root);
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        var block = ReadBlocks(readme).First();
        string line = block.Lines.First(l => l.Trim().Length > 0);
        string edited = readme.Replace(line, line + " // edited", StringComparison.Ordinal);
        var problems = Compare(edited, snippets);
        Assert.That(problems, Has.Some.Contains($"README.md:{block.Line}"), "the edited block is reported");
        Assert.That(problems, Has.Some.Contains("is not shown in README.md"), "and its region is no longer shown");
    }

    /// <summary>Every region in the snippet folders, and the problems with the markers or with stray using directives.</summary>
    internal static (List<Snippet> Snippets, List<string> Problems) ReadSnippets(string root)
    {
        var snippets = new List<Snippet>();
        var problems = new List<string>();
        var files = SnippetFolders.SelectMany(f => Directory.EnumerateFiles(Path.Combine(root, f), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Split(Path.DirectorySeparatorChar).Any(p => p is "bin" or "obj"))
            .OrderBy(f => f, StringComparer.Ordinal);
        foreach (var path in files)
        {
            string file = Path.GetRelativePath(root, path).Replace(Path.DirectorySeparatorChar, '/');
            var parts = new List<(string Name, List<string> Lines)>();
            var strayUsings = new List<string>();
            (string Name, List<string> Lines)? open = null;
            var lines = File.ReadAllLines(path);
            for (int i = 0; i < lines.Length; i++)
            {
                string trimmed = lines[i].Trim();
                if (trimmed.StartsWith(StartMarker, StringComparison.Ordinal))
                {
                    if (open is not null) problems.Add($"{file}:{i + 1}: '{StartMarker}' inside snippet '{open.Value.Name}' (regions do not nest).");
                    string name = trimmed[StartMarker.Length..].Trim();
                    if (name.Length == 0) problems.Add($"{file}:{i + 1}: a snippet needs a name.");
                    open = (name, []);
                }
                else if (trimmed == EndMarker)
                {
                    if (open is null) problems.Add($"{file}:{i + 1}: '{EndMarker}' without a start.");
                    else parts.Add(open.Value);
                    open = null;
                }
                else if (open is not null) open.Value.Lines.Add(lines[i]);
                else if (UsingDirective().IsMatch(lines[i])) strayUsings.Add($"{file}:{i + 1}: {trimmed}");
            }
            if (open is not null) problems.Add($"{file}: snippet '{open.Value.Name}' has no '{EndMarker}'.");
            if (parts.Count > 0 && strayUsings.Count > 0)
                problems.AddRange(strayUsings.Select(u => $"{u} — a using directive outside the file's snippets: the README's snippet would not compile as shown."));
            foreach (var group in parts.GroupBy(p => p.Name))
            {
                var joined = new List<string>();
                foreach (var (_, partLines) in group)
                {
                    if (joined.Count > 0) joined.Add("");
                    joined.AddRange(Normalize(partLines));
                }
                if (snippets.FirstOrDefault(s => s.Name == group.Key) is { } other)
                    problems.Add($"{file}: snippet '{group.Key}' is also in {other.File}; names must be unique.");
                snippets.Add(new Snippet(group.Key, file, joined));
            }
        }
        return (snippets, problems);
    }

    /// <summary>The README's <c>```csharp</c> blocks.</summary>
    internal static List<ReadmeBlock> ReadBlocks(string readme)
    {
        var lines = readme.ReplaceLineEndings("\n").Split('\n');
        var blocks = new List<ReadmeBlock>();
        for (int i = 0; i < lines.Length; i++)
        {
            if (!lines[i].TrimStart().StartsWith("```csharp", StringComparison.Ordinal)) continue;
            int start = i;
            var body = new List<string>();
            for (i++; i < lines.Length && lines[i].Trim() != "```"; i++) body.Add(lines[i]);
            string above = "";
            for (int j = start - 1; j >= 0; j--)
                if (lines[j].Trim().Length > 0) { above = lines[j]; break; }
            blocks.Add(new ReadmeBlock(start + 1, Normalize(body), above));
        }
        return blocks;
    }

    /// <summary>Every difference between the README's C# blocks and the snippets.</summary>
    internal static List<string> Compare(string readme, IReadOnlyList<Snippet> snippets)
    {
        var problems = new List<string>();
        var shown = new HashSet<string>();
        foreach (var block in ReadBlocks(readme))
        {
            var match = snippets.FirstOrDefault(s => s.Lines.SequenceEqual(block.Lines));
            if (match is not null)
            {
                shown.Add(match.Name);
                if (!block.Above.Contains($"]({match.File})", StringComparison.Ordinal))
                    problems.Add($"README.md:{block.Line}: the line above the block must link the file it is compiled in, ]({match.File}), but is: {block.Above.Trim()}");
                continue;
            }
            // Explain against the snippets of the file the README points to (else all of them): the first line that differs.
            var candidates = snippets.Where(s => block.Above.Contains($"]({s.File})", StringComparison.Ordinal)).ToList();
            if (candidates.Count == 0) candidates = snippets.ToList();
            var closest = candidates.OrderByDescending(s => s.Lines.Zip(block.Lines).TakeWhile(p => p.First == p.Second).Count()).FirstOrDefault();
            string detail = "";
            if (closest is not null)
            {
                int k = closest.Lines.Zip(block.Lines).TakeWhile(p => p.First == p.Second).Count();
                string code = k < closest.Lines.Count ? closest.Lines[k] : "(end of snippet)";
                string text = k < block.Lines.Count ? block.Lines[k] : "(end of block)";
                detail = $" Closest: snippet '{closest.Name}' in {closest.File}, which differs at its line {k + 1}:{Environment.NewLine}  README: {text}{Environment.NewLine}  code:   {code}";
            }
            problems.Add($"README.md:{block.Line}: this csharp block is not a marked snippet of compiled code.{detail}");
        }
        foreach (var s in snippets.Where(s => !shown.Contains(s.Name)))
            problems.Add($"snippet '{s.Name}' ({s.File}) is not shown in README.md.");
        return problems;
    }

    /// <summary>Trailing white space removed, blank lines at both ends dropped, the common indentation removed.</summary>
    internal static List<string> Normalize(IEnumerable<string> lines)
    {
        var list = lines.Select(l => l.TrimEnd()).ToList();
        while (list.Count > 0 && list[0].Length == 0) list.RemoveAt(0);
        while (list.Count > 0 && list[^1].Length == 0) list.RemoveAt(list.Count - 1);
        int indent = list.Where(l => l.Length > 0).Select(l => l.Length - l.TrimStart().Length).DefaultIfEmpty(0).Min();
        return list.Select(l => l.Length == 0 ? l : l[indent..]).ToList();
    }
}
