using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace Updp.Export;

/// <summary>
/// An ONNX model with one float input and one float output loaded in ONNX Runtime (CPU), with all
/// graph optimisations and a fixed number of intra-op threads (sequential execution, one inter-op
/// thread, no spinning), so its timings compare with libtorch's at the same thread count.
/// </summary>
public sealed class OnnxRuntimeModel : IDisposable
{
    private readonly InferenceSession _session;
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;

    private OnnxRuntimeModel(Func<SessionOptions, InferenceSession> open, int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        using var options = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        // Each session owns a thread pool whose workers spin after a run by default. Two sessions timed
        // in turns (original vs merged) then spin against each other on a small machine, and batch-32
        // timings turned bimodal (median 19.6 ms, p10 14.5 ms on a quiet 2-core machine). Idle workers
        // sleep instead.
        options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        _session = open(options);
        if (_session.InputNames.Count != 1 || _session.OutputNames.Count != 1)
        {
            var counts = $"{_session.InputNames.Count} inputs and {_session.OutputNames.Count} outputs";
            _session.Dispose();
            throw new InvalidDataException($"expected an ONNX model with one input and one output, got {counts}");
        }
        _inputNames = [_session.InputNames[0]];
        _outputNames = [_session.OutputNames[0]];
        Threads = threads;
    }

    /// <summary>Intra-op threads of the session.</summary>
    public int Threads { get; }

    /// <summary>Loads an .onnx file.</summary>
    /// <exception cref="InvalidDataException">ONNX Runtime cannot load the file (the message says why).</exception>
    public static OnnxRuntimeModel Load(string path, int threads) => Open(() => new OnnxRuntimeModel(o => new InferenceSession(path, o), threads), path);

    /// <summary>Loads a serialised ONNX model held in memory.</summary>
    public static OnnxRuntimeModel Load(byte[] model, int threads) => Open(() => new OnnxRuntimeModel(o => new InferenceSession(model, o), threads), "the ONNX model");

    /// <summary>Runs the model on <paramref name="input"/> (float32, any device) and returns its output as a CPU tensor.</summary>
    public Tensor Run(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var data = input.detach().to_type(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        using var value = OrtValue.CreateTensorValueFromMemory(data, input.shape);
        using var runOptions = new RunOptions();
        using var outputs = _session.Run(runOptions, _inputNames, [value], _outputNames);
        var output = outputs[0];
        var shape = output.GetTensorTypeAndShape().Shape;
        return tensor(output.GetTensorDataAsSpan<float>().ToArray(), shape);
    }

    /// <summary>
    /// An action that runs the model once on random input of <paramref name="shape"/>, with input and
    /// output buffers allocated up front (what a timed loop should measure); dispose it afterwards.
    /// </summary>
    public TimedRun Prepare(long[] shape, int seed = 0)
    {
        var random = new Random(seed);
        var data = new float[shape.Aggregate(1L, (a, b) => a * b)];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (float)((random.NextDouble() * 2) - 1);
        }
        return new TimedRun(_session, _inputNames, _outputNames, OrtValue.CreateTensorValueFromMemory(data, shape));
    }

    public void Dispose() => _session.Dispose();

    private static OnnxRuntimeModel Open(Func<OnnxRuntimeModel> open, string what)
    {
        try
        {
            return open();
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidDataException($"ONNX Runtime cannot load {what}: {e.Message}", e);
        }
    }

    /// <summary>One prepared inference: call <see cref="Run"/> repeatedly.</summary>
    public sealed class TimedRun : IDisposable
    {
        private readonly InferenceSession _session;
        private readonly string[] _inputNames;
        private readonly string[] _outputNames;
        private readonly OrtValue _input;
        private readonly RunOptions _runOptions = new();

        internal TimedRun(InferenceSession session, string[] inputNames, string[] outputNames, OrtValue input)
        {
            _session = session;
            _inputNames = inputNames;
            _outputNames = outputNames;
            _input = input;
        }

        public void Run()
        {
            using var outputs = _session.Run(_runOptions, _inputNames, [_input], _outputNames);
        }

        public void Dispose()
        {
            _input.Dispose();
            _runOptions.Dispose();
        }
    }
}
