using System.Buffers.Binary;

namespace Updp.Checkpoints;

/// <summary>
/// Walks a pickle's opcodes (protocols 0–5) without running them and checks that each one is known
/// and that every length-prefixed argument lies inside the pickle. The unpickler TorchSharp.PyBridge
/// uses allocates a length's worth of bytes before reading them, so an argument claiming gigabytes
/// would otherwise be allocated before the pickle turns out to be short.
/// </summary>
internal static class PickleGuard
{
    /// <exception cref="CheckpointException">The pickle has an unknown opcode, an argument past its end, or no STOP.</exception>
    public static void Check(ReadOnlySpan<byte> pickle, string path, string member)
    {
        var at = 0;
        while (at < pickle.Length)
        {
            var opcode = pickle[at];
            var start = at++;
            long argument;
            switch (opcode)
            {
                case (byte)'.': // STOP
                    return;
                // No argument.
                case (byte)'(' or (byte)'0' or (byte)'1' or (byte)'2' or (byte)'N' or (byte)'R' or (byte)'a' or (byte)'b' or (byte)'d'
                    or (byte)'}' or (byte)'e' or (byte)'l' or (byte)']' or (byte)'o' or (byte)'s' or (byte)'u' or (byte)'t' or (byte)')'
                    or (byte)'Q' or 0x81 or 0x85 or 0x86 or 0x87 or 0x88 or 0x89 or 0x8f or 0x90 or 0x91 or 0x92 or 0x93 or 0x94 or 0x97 or 0x98:
                    argument = 0;
                    break;
                // Fixed-size arguments.
                case (byte)'K' or (byte)'q' or (byte)'h' or 0x80 or 0x82:
                    argument = 1;
                    break;
                case (byte)'M' or 0x83:
                    argument = 2;
                    break;
                case (byte)'J' or (byte)'r' or (byte)'j' or 0x84:
                    argument = 4;
                    break;
                case (byte)'G' or 0x95:
                    argument = 8;
                    break;
                // A length, then that many bytes.
                case (byte)'C' or (byte)'U' or 0x8c or 0x8a:
                    argument = Prefixed(pickle, at, 1);
                    break;
                case (byte)'B' or (byte)'T' or (byte)'X' or 0x8b:
                    argument = Prefixed(pickle, at, 4);
                    break;
                case 0x8d or 0x8e or 0x96:
                    argument = Prefixed(pickle, at, 8);
                    break;
                // Text arguments ended by a newline: one line, or two for GLOBAL and INST.
                case (byte)'I' or (byte)'L' or (byte)'F' or (byte)'S' or (byte)'V' or (byte)'P' or (byte)'g' or (byte)'p':
                    argument = Line(pickle, at, 1);
                    break;
                case (byte)'c' or (byte)'i':
                    argument = Line(pickle, at, 2);
                    break;
                default:
                    throw Invalid(path, member, $"unknown opcode 0x{opcode:x2} at offset {start}");
            }
            if (argument < 0 || argument > pickle.Length - at)
            {
                throw Invalid(path, member, $"the argument of opcode 0x{opcode:x2} at offset {start} runs past the end of the pickle ({pickle.Length} bytes)");
            }
            at += (int)argument;
        }
        throw Invalid(path, member, "it ends without a STOP opcode");
    }

    // The bytes taken by a little-endian length of 1, 4 or 8 bytes at `at` and the data it counts;
    // -1 when the length itself is cut off or negative.
    private static long Prefixed(ReadOnlySpan<byte> pickle, int at, int size)
    {
        if (pickle.Length - at < size)
        {
            return -1;
        }
        var n = size switch
        {
            1 => pickle[at],
            4 => BinaryPrimitives.ReadInt32LittleEndian(pickle[at..]),
            _ => BinaryPrimitives.ReadInt64LittleEndian(pickle[at..]),
        };
        return n < 0 || n > pickle.Length ? -1 : size + n;
    }

    // The bytes taken by `lines` newline-ended lines from `at`; -1 when a newline is missing.
    private static long Line(ReadOnlySpan<byte> pickle, int at, int lines)
    {
        var from = at;
        for (var i = 0; i < lines; i++)
        {
            var end = pickle[from..].IndexOf((byte)'\n');
            if (end < 0)
            {
                return -1;
            }
            from += end + 1;
        }
        return from - at;
    }

    private static CheckpointException Invalid(string path, string member, string why) =>
        new($"'{path}': member '{member}' is not a valid pickle: {why}", path);
}
