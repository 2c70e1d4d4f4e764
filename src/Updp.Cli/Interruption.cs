using System.Runtime.InteropServices;

namespace Updp.Cli;

/// <summary>
/// SIGINT and SIGTERM. A verb that can stop cleanly (<see cref="Stoppable"/>: the training verbs)
/// is asked to: its <see cref="Token"/> is cancelled, the current step finishes, the state saved at
/// the last epoch's end stays resumable, and the tool exits 130 saying how to resume. A second
/// signal, or a signal during a verb that cannot stop cleanly, ends the process at once with 130.
/// </summary>
internal sealed class Interruption : IDisposable
{
    private static CancellationTokenSource _source = new();
    private static string? _resume;
    private readonly PosixSignalRegistration[] _registrations;

    private Interruption()
    {
        _registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal), PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal)];
    }

    /// <summary>Cancelled by the first SIGINT or SIGTERM during a <see cref="Stoppable"/> verb.</summary>
    public static CancellationToken Token => _source.Token;

    /// <summary>
    /// Set when a signal ends the process at once: the libtorch call the main thread is in may then
    /// fail ("Invalid (backend, op) pair"), and that failure is not the user's to read
    /// (docs/RELIABILITY.md, "Interruption").
    /// </summary>
    public static bool Exiting => Volatile.Read(ref _exiting);

    private static bool _exiting;

    /// <summary>How to continue the interrupted work, printed after the interruption.</summary>
    public static string? ResumeHint => _resume;

    /// <summary>Handles the signals for the life of the returned object.</summary>
    public static Interruption Listen()
    {
        _source = new CancellationTokenSource();
        _resume = null;
        return new Interruption();
    }

    /// <summary>Declares that the running verb stops cleanly on <see cref="Token"/>; <paramref name="resumeHint"/> says how to continue.</summary>
    public static CancellationToken Stoppable(string resumeHint)
    {
        _resume = resumeHint;
        return Token;
    }

    private static void OnSignal(PosixSignalContext context)
    {
        // Keep the runtime from ending the process; we decide how.
        context.Cancel = true;
        if (_resume is null || _source.IsCancellationRequested)
        {
            Volatile.Write(ref _exiting, true);
            Console.Error.WriteLine($"interrupted ({context.Signal})");
            ExitNow(CliErrors.Interrupted);
        }
        Console.Error.WriteLine($"{context.Signal}: stopping after the current step (send it again to stop at once)");
        _source.Cancel();
    }

    // Environment.Exit runs libtorch's static destructors while the main thread may still be in a
    // libtorch call, which then fails or crashes the process (exit 139 instead of 130). _exit ends
    // it at once; every file is written under a temporary name and renamed (AtomicFile), so nothing
    // is left half-written under its final name (docs/RELIABILITY.md, "Interruption").
    private static void ExitNow(int code)
    {
        if (OperatingSystem.IsWindows())
        {
            Environment.Exit(code);
        }
        _exit(code);
    }

    [DllImport("libc", EntryPoint = "_exit")]
    private static extern void _exit(int status);

    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }
    }
}
