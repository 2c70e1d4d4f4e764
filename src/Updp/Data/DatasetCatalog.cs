namespace Updp.Data;

/// <summary>
/// Turns a dataset argument (a catalog name or a directory) into a <see cref="DatasetSource"/>.
/// </summary>
public static class DatasetCatalog
{
    /// <summary>Environment variable naming a directory searched before the system one.</summary>
    public const string DataDirectoryVariable = "UPDP_DATA";

    /// <summary>Where Debian's dataset packages install their files.</summary>
    public const string SystemDataDirectory = "/usr/share/datasets";

    /// <summary>Catalog name of Fashion-MNIST.</summary>
    public const string FashionMnistName = "fashion-mnist";

    /// <summary>Catalog name of MNIST.</summary>
    public const string MnistName = "mnist";

    /// <summary>Fashion-MNIST's class names, indexed by label.</summary>
    public static IReadOnlyList<string> FashionMnistClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    private static readonly (string Role, string BaseName)[] ExpectedFiles =
    [
        ("training images", "train-images-idx3-ubyte"),
        ("training labels", "train-labels-idx1-ubyte"),
        ("test images", "t10k-images-idx3-ubyte"),
        ("test labels", "t10k-labels-idx1-ubyte"),
    ];

    /// <summary>
    /// Resolves <paramref name="spec"/>: a <c>.csv</c> file is a list of <c>path,label</c> rows and a
    /// directory with a <c>train</c> folder an image folder (<see cref="ImageFolderSource"/>);
    /// <c>fashion-mnist</c> and <c>mnist</c> are looked up in
    /// <c>$UPDP_DATA/&lt;name&gt;</c> (when the variable is set) and then in
    /// <c>/usr/share/datasets/&lt;name&gt;</c>; any other directory must hold the four
    /// idx files, each either raw or with a .gz suffix (write <c>./mnist</c> for a local directory
    /// that shares a catalog name). Names are case-insensitive. Files are located but not read.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">No directory was found; the message lists where it was looked for.</exception>
    /// <exception cref="FileNotFoundException">The directory lacks one of the four files.</exception>
    public static IDataSource Resolve(string spec)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        if (spec.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
        {
            return File.Exists(spec)
                ? ImageFolderSource.List(spec)
                : throw new FileNotFoundException($"file list '{spec}' does not exist (expected a CSV file of 'path,label' rows)", spec);
        }

        if (ImageFolderSource.IsImageFolder(spec))
        {
            return ImageFolderSource.Folder(spec);
        }

        return Resolve(spec, Environment.GetEnvironmentVariable(DataDirectoryVariable), SystemDataDirectory);
    }

    internal static DatasetSource Resolve(string spec, string? userDataDirectory, string systemDataDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        var name = spec.Trim().ToLowerInvariant();
        if (name is FashionMnistName or MnistName)
        {
            var candidates = new List<string>();
            if (!string.IsNullOrEmpty(userDataDirectory))
            {
                candidates.Add(Path.Combine(userDataDirectory, name));
            }

            candidates.Add(Path.Combine(systemDataDirectory, name));
            var directory = candidates.FirstOrDefault(Directory.Exists)
                ?? throw new DirectoryNotFoundException(MissingKnownDataset(name, candidates));
            return name == FashionMnistName
                ? FromDirectory(name, directory, FashionMnistClassNames, Normalization.FashionMnist)
                : FromDirectory(name, directory, LabeledImages.NumberedClassNames(10), Normalization.Mnist);
        }

        if (!Directory.Exists(spec))
        {
            throw new DirectoryNotFoundException(
                $"Dataset '{spec}' is neither a known dataset name ({FashionMnistName}, {MnistName}) nor an existing directory "
                + $"(looked for directory '{Path.GetFullPath(spec)}'). A dataset directory holds train/<class>/<images> (and optionally val/ and test/), "
                + $"or {DescribeExpectedFiles()}; a .csv file lists 'path,label' rows.");
        }

        return FromDirectory(spec, spec, classNames: null, normalization: null);
    }

    private static DatasetSource FromDirectory(string name, string directory, IReadOnlyList<string>? classNames, Normalization? normalization)
    {
        var paths = ExpectedFiles.Select(file => FindFile(directory, file.Role, file.BaseName)).ToArray();
        return new DatasetSource(name, directory, paths[0], paths[1], paths[2], paths[3], classNames, normalization);
    }

    // Raw wins over .gz when both exist: it is what someone who unpacked the files meant to use.
    private static string FindFile(string directory, string role, string baseName)
    {
        var raw = Path.Combine(directory, baseName);
        if (File.Exists(raw))
        {
            return raw;
        }

        var gzip = raw + ".gz";
        if (File.Exists(gzip))
        {
            return gzip;
        }

        throw new FileNotFoundException(
            $"Dataset directory '{directory}' is neither an image folder (no 'train' folder; expected {directory}/train/<class>/<images>) "
            + $"nor an idx data set (no {role} file '{raw}[.gz]').",
            gzip);
    }

    private static string MissingKnownDataset(string name, IEnumerable<string> candidates)
    {
        var looked = string.Join(" and ", candidates.Select(c => $"'{c}'"));
        var remedy = name == FashionMnistName
            ? "Install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
            : $"Put the MNIST idx files in {SystemDataDirectory}/{MnistName}";
        return $"Dataset '{name}' not found: looked for directory {looked}. {remedy}, "
            + $"or set {DataDirectoryVariable} to a directory with a '{name}' subdirectory holding {DescribeExpectedFiles()}.";
    }

    private static string DescribeExpectedFiles() =>
        string.Join(", ", ExpectedFiles.Select(f => f.BaseName + "[.gz]"));
}
