namespace Updp.Export;

/// <summary>
/// A module of the model has no ONNX emitter (a family or layer not yet exportable); the message
/// names the module's type and path. Callers that can go on without <c>model.onnx</c> catch this
/// type; any other failure of an export is an error.
/// </summary>
public sealed class MissingOnnxEmitterException : NotSupportedException
{
    public MissingOnnxEmitterException(string moduleType, string modulePath)
        : base($"ONNX export: no emitter for {moduleType} at '{modulePath}'; register one with OnnxEmitters.Register")
    {
        ModuleType = moduleType;
        ModulePath = modulePath;
    }

    /// <summary>The .NET type name of the module without an emitter.</summary>
    public string ModuleType { get; }

    /// <summary>Its path in the model (<c>(model)</c> for the model itself).</summary>
    public string ModulePath { get; }
}
