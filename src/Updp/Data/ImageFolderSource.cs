using System.Globalization;

namespace Updp.Data;

/// <summary>
/// A data set of image files: a folder in torchvision's ImageFolder layout
/// (<c>DIR/train/&lt;class&gt;/…</c>, optionally <c>DIR/val/&lt;class&gt;/…</c> and
/// <c>DIR/test/&lt;class&gt;/…</c>; classes are the sorted folder names of train), or a CSV file
/// list of <c>path,label</c> rows with paths relative to the file. Without a validation split one
/// is carved from train (seeded, stratified); without a test split, test results come from
/// validation.
/// </summary>
public sealed class ImageFolderSource : IDataSource
{
    /// <summary>File extensions read as images (case-insensitive).</summary>
    public static IReadOnlyList<string> Extensions { get; } = [".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif"];

    // Class folders nested deeper than this are refused rather than walked (and symlink loops end).
    private const int MaxDepth = 32;

    private ImageFolderSource(string name, string path, bool isList)
    {
        Name = name;
        Path = path;
        IsList = isList;
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>The data set's folder, or its CSV file list.</summary>
    public string Path { get; }

    /// <summary>Whether <see cref="Path"/> is a CSV file list.</summary>
    public bool IsList { get; }

    /// <summary>Whether <paramref name="path"/> is a folder with a <c>train</c> subfolder.</summary>
    public static bool IsImageFolder(string path) => Directory.Exists(System.IO.Path.Combine(path, "train"));

    /// <summary>A folder data set.</summary>
    public static ImageFolderSource Folder(string path) => new(path, path, isList: false);

    /// <summary>A CSV file list.</summary>
    public static ImageFolderSource List(string path) => new(path, path, isList: true);

    /// <inheritdoc/>
    public int DefaultValidationCount(int trainCount) => Math.Max(1, (int)Math.Round(trainCount * 0.1));

    /// <inheritdoc/>
    public DataSplits LoadSplits(int? validationCount, int seed, DataLoadOptions? options = null)
    {
        options ??= new DataLoadOptions();
        var listed = IsList ? ReadList() : ReadFolder();
        var skipped = new List<BadImageException>();

        // Evaluation reads the test split alone when there is one: the others are not checked.
        var testOnly = options.TestOnly && listed.Test is not null;
        var train = testOnly ? listed.Train : Check(listed.Train, options, skipped, "train");
        var val = listed.Validation is { } v ? (testOnly ? v : Check(v, options, skipped, "val")) : null;
        var test = listed.Test is { } t ? Check(t, options, skipped, "test") : null;
        if (train.Count == 0)
        {
            throw new InvalidDataException($"data set '{Name}' has no usable training images");
        }

        if (val is null)
        {
            var labels = Enumerable.Range(0, train.Count).Select(train.LabelOf).ToArray();
            var (trainIndices, valIndices) = DataSplits.StratifiedSplitIndices(labels, train.ClassCount, validationCount ?? DefaultValidationCount(train.Count), seed);
            val = train.Subset(valIndices);
            train = train.Subset(trainIndices);
        }

        return new DataSplits(train, val, test ?? val, Normalization.Identity)
        {
            TestIsValidation = test is null,
            SkippedImages = skipped,
        };
    }

    private sealed record Listing(ImageFileSet Train, ImageFileSet? Validation, ImageFileSet? Test);

    private Listing ReadFolder()
    {
        var trainDir = System.IO.Path.Combine(Path, "train");
        if (!Directory.Exists(trainDir))
        {
            throw new DirectoryNotFoundException($"data folder '{Path}' has no 'train' folder; expected {Path}/train/<class>/<image files>");
        }

        var classNames = ClassFolders(trainDir).Select(d => System.IO.Path.GetFileName(d)).ToArray();
        if (classNames.Length == 0)
        {
            throw new InvalidDataException($"'{trainDir}' has no class folders; expected {trainDir}/<class>/<image files>");
        }

        var train = ScanSplit(trainDir, classNames, requireEveryClass: true);
        ImageFileSet? Optional(string split)
        {
            var dir = System.IO.Path.Combine(Path, split);
            return Directory.Exists(dir) ? ScanSplit(dir, classNames, requireEveryClass: false) : null;
        }

        return new Listing(train, Optional("val"), Optional("test"));
    }

    private static string[] ClassFolders(string splitDir) =>
        [.. Directory.EnumerateDirectories(splitDir)
            .Where(d => !System.IO.Path.GetFileName(d).StartsWith('.'))
            .OrderBy(d => System.IO.Path.GetFileName(d), StringComparer.Ordinal)];

    private static ImageFileSet ScanSplit(string splitDir, IReadOnlyList<string> classNames, bool requireEveryClass)
    {
        var index = classNames.Select((name, i) => (name, i)).ToDictionary(p => p.name, p => p.i, StringComparer.Ordinal);
        var paths = new List<string>();
        var labels = new List<int>();
        var realClassDirs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var classDir in ClassFolders(splitDir))
        {
            var name = System.IO.Path.GetFileName(classDir);
            var realClassDir = RealPath(classDir);
            if (realClassDirs.TryGetValue(realClassDir, out var twin))
            {
                throw new InvalidDataException(
                    $"class folders '{twin}' and '{classDir}' are the same folder (a symbolic link); every image would get two labels");
            }

            realClassDirs[realClassDir] = classDir;
            if (!index.TryGetValue(name, out var label))
            {
                throw new InvalidDataException(
                    $"class folder '{classDir}' has no counterpart in train (train's classes: {string.Join(", ", classNames)})");
            }

            var files = ImageFilesUnder(classDir);
            if (files.Count == 0)
            {
                throw new InvalidDataException(
                    $"class folder '{classDir}' holds no image files ({string.Join(", ", Extensions)}); remove it or add images");
            }

            paths.AddRange(files);
            labels.AddRange(Enumerable.Repeat(label, files.Count));
        }

        if (paths.Count == 0)
        {
            throw new InvalidDataException($"'{splitDir}' holds no image files in class folders");
        }

        return new ImageFileSet(paths, labels, classNames, splitDir);
    }

    // Every image file below `root`, sorted by path. Symbolic links to folders are followed only
    // when they stay inside the class folder, each real folder once: a link back up the tree would
    // loop forever, or give another class's images this class's label.
    private static List<string> ImageFilesUnder(string root)
    {
        var files = new List<string>();
        var visited = new HashSet<string>(StringComparer.Ordinal);
        var realRoot = RealPath(root);
        void Walk(string dir, int depth)
        {
            var real = RealPath(dir);
            var inside = real == realRoot || real.StartsWith(realRoot + "/", StringComparison.Ordinal);
            if (!inside || !visited.Add(real))
            {
                return;
            }

            if (depth > MaxDepth)
            {
                throw new InvalidDataException($"'{dir}' is nested more than {MaxDepth} folders deep below its class folder");
            }

            foreach (var file in Directory.EnumerateFiles(dir))
            {
                var name = System.IO.Path.GetFileName(file);
                if (!name.StartsWith('.') && Extensions.Contains(System.IO.Path.GetExtension(file).ToLowerInvariant()))
                {
                    files.Add(file);
                }
            }

            foreach (var sub in Directory.EnumerateDirectories(dir).Where(d => !System.IO.Path.GetFileName(d).StartsWith('.')))
            {
                Walk(sub, depth + 1);
            }
        }

        Walk(root, 0);
        files.Sort(StringComparer.Ordinal);
        return files;
    }

    // The canonical path of a folder with every symbolic link resolved, in any component (what
    // realpath(3) gives), so that a folder reached through a link is recognised as visited.
    private static string RealPath(string dir)
    {
        var full = System.IO.Path.GetFullPath(dir).TrimEnd('/');
        var parent = System.IO.Path.GetDirectoryName(full);
        if (string.IsNullOrEmpty(parent) || full.Length == 0)
        {
            return "/";
        }

        var real = System.IO.Path.Combine(RealPath(parent), System.IO.Path.GetFileName(full));
        for (var hops = 0; new DirectoryInfo(real).LinkTarget is { } target; hops++)
        {
            if (hops >= 40)
            {
                throw new InvalidDataException($"'{dir}': too many levels of symbolic links");
            }

            var resolved = System.IO.Path.IsPathRooted(target) ? target : System.IO.Path.Combine(System.IO.Path.GetDirectoryName(real)!, target);
            var resolvedParent = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(resolved).TrimEnd('/'));
            real = string.IsNullOrEmpty(resolvedParent)
                ? "/"
                : System.IO.Path.Combine(RealPath(resolvedParent), System.IO.Path.GetFileName(System.IO.Path.GetFullPath(resolved).TrimEnd('/')));
        }

        return real;
    }

    private Listing ReadList()
    {
        if (!File.Exists(Path))
        {
            throw new FileNotFoundException($"file list '{Path}' does not exist", Path);
        }

        var baseDir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!;
        var rows = new List<(string Path, string Label, int Line)>();
        var lineNumber = 0;
        RegularFile.Require(Path, "file list");
        foreach (var line in File.ReadLines(Path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line) || line.TrimStart().StartsWith('#'))
            {
                continue;
            }

            var fields = SplitCsv(line, lineNumber);
            if (fields.Count != 2 || string.IsNullOrWhiteSpace(fields[0]) || string.IsNullOrWhiteSpace(fields[1]))
            {
                throw new InvalidDataException($"file list '{Path}' line {lineNumber}: expected 'path,label', got '{line}'");
            }

            if (rows.Count == 0 && fields[0].Trim().Equals("path", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            var file = fields[0].Trim();
            rows.Add((System.IO.Path.IsPathRooted(file) ? file : System.IO.Path.Combine(baseDir, file), fields[1].Trim(), lineNumber));
        }

        if (rows.Count == 0)
        {
            throw new InvalidDataException($"file list '{Path}' has no 'path,label' rows");
        }

        // Integer labels are class indices (0 … max); other labels are names, sorted as folders are.
        // A mix of the two, or an integer that is no class index, is a mistake to report, not a name.
        static bool IntegerLike(string label) => label.TrimStart('+', '-').Length > 0 && label.TrimStart('+', '-').All(char.IsAsciiDigit)
            && label.Length - label.TrimStart('+', '-').Length <= 1;
        var numeric = IntegerLike(rows[0].Label);
        foreach (var row in rows)
        {
            if (IntegerLike(row.Label) != numeric)
            {
                throw new InvalidDataException(
                    $"file list '{Path}' line {row.Line}: label '{row.Label}' is {(numeric ? "a name" : "a number")} but line {rows[0].Line}'s is "
                    + $"{(numeric ? "a class index" : "a class name")}; use names or class indices, not both");
            }

            if (numeric && (!int.TryParse(row.Label, NumberStyles.None, CultureInfo.InvariantCulture, out var index) || index >= 100_000))
            {
                throw new InvalidDataException($"file list '{Path}' line {row.Line}: label {row.Label} is not a class index (0 to 99,999)");
            }
        }

        IReadOnlyList<string> classNames;
        int[] labels;
        if (numeric)
        {
            labels = [.. rows.Select(r => int.Parse(r.Label, NumberStyles.None, CultureInfo.InvariantCulture))];

            classNames = LabeledImages.NumberedClassNames(labels.Max() + 1);
        }
        else
        {
            classNames = [.. rows.Select(r => r.Label).Distinct().Order(StringComparer.Ordinal)];
            var index = classNames.Select((name, i) => (name, i)).ToDictionary(p => p.name, p => p.i, StringComparer.Ordinal);
            labels = [.. rows.Select(r => index[r.Label])];
        }

        foreach (var row in rows.Where(r => !File.Exists(r.Path)).Take(1))
        {
            throw new FileNotFoundException(
                $"file list '{Path}' line {row.Line}: image '{row.Path}' {(Directory.Exists(row.Path) ? "is a folder, not a file" : "does not exist")}", row.Path);
        }

        foreach (var twice in rows.GroupBy(r => System.IO.Path.GetFullPath(r.Path)).Where(g => g.Count() > 1).Take(1))
        {
            throw new InvalidDataException(
                $"file list '{Path}': '{twice.First().Path}' is listed on lines {string.Join(" and ", twice.Select(r => r.Line))}; list each image once");
        }

        return new Listing(new ImageFileSet([.. rows.Select(r => r.Path)], labels, classNames, Path), null, null);
    }

    // One CSV line: commas separate fields; a field in double quotes may hold commas and "" for a quote.
    private List<string> SplitCsv(string line, int lineNumber)
    {
        var fields = new List<string>();
        var field = new System.Text.StringBuilder();
        var quoted = false;
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < line.Length && line[i + 1] == '"')
                {
                    field.Append('"');
                    i++;
                }
                else if (c == '"')
                {
                    quoted = false;
                }
                else
                {
                    field.Append(c);
                }
            }
            else if (c == '"' && field.ToString().Trim().Length == 0)
            {
                field.Clear();
                quoted = true;
            }
            else if (c == ',')
            {
                fields.Add(field.ToString());
                field.Clear();
            }
            else
            {
                field.Append(c);
            }
        }

        if (quoted)
        {
            throw new InvalidDataException($"file list '{Path}' line {lineNumber}: unterminated quoted field");
        }

        fields.Add(field.ToString());
        return fields;
    }

    // Reads every header (in parallel): a file that is not an image or has a refused size fails
    // the load, naming it, before any training starts; with SkipBadImages it is left out and counted.
    private static ImageFileSet Check(ImageFileSet set, DataLoadOptions options, List<BadImageException> skipped, string split)
    {
        var failures = new BadImageException?[set.Count];
        var done = 0;
        Parallel.For(0, set.Count, i =>
        {
            try
            {
                if (options.DecodeToCheck)
                {
                    options.Reader.Read(set.PathOf(i), 3);
                }
                else
                {
                    options.Reader.CheckHeader(set.PathOf(i));
                }
            }
            catch (BadImageException e)
            {
                failures[i] = e;
            }

            var n = Interlocked.Increment(ref done);
            if (n % 256 == 0 || n == set.Count)
            {
                options.Progress?.Report(($"{(options.DecodeToCheck ? "decoding" : "checking")} {split} images", n, set.Count));
            }
        });
        var bad = Enumerable.Range(0, set.Count).Where(i => failures[i] is not null).ToList();
        if (bad.Count == 0)
        {
            return set.Reader == options.Reader ? set : Rebuild(set, options.Reader);
        }

        if (!options.SkipBadImages)
        {
            var first = failures[bad[0]]!;
            var more = bad.Count > 1 ? $" ({bad.Count - 1} more bad images; --skip-bad-images leaves them out)" : " (--skip-bad-images leaves such files out)";
            throw new BadImageException(first.FilePath, first.Reason + more, first);
        }

        skipped.AddRange(bad.Select(i => failures[i]!));
        var kept = Rebuild(set, options.Reader).Without(bad.ToHashSet());
        var before = set.CountPerClass();
        var emptied = kept.CountPerClass().Select((n, c) => (n, c)).Where(p => p.n == 0 && before[p.c] > 0).ToList();
        if (emptied.Count > 0)
        {
            throw new InvalidDataException(
                $"every {split} image of class '{set.ClassNames[emptied[0].c]}' is bad; a class needs at least one usable image");
        }

        return kept;
    }

    private static ImageFileSet Rebuild(ImageFileSet set, ImageReader reader) =>
        new([.. set.Paths], [.. Enumerable.Range(0, set.Count).Select(set.LabelOf)], set.ClassNames, set.Origin, reader);
}
