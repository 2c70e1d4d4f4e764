using System.Text.Json.Serialization;

namespace Updp.Data;

/// <summary>
/// How images were prepared for a model: recorded in its checkpoint so that evaluation and
/// prediction feed it exactly what it was trained on.
/// </summary>
/// <param name="ImageSize">Side of the square source images (28 for the MNIST family); other images are resized to it.</param>
/// <param name="InputSize">Side of the square network input after padding (e.g. 32 for 28×28 images).</param>
/// <param name="Mean">Normalisation mean of pixel values in [0, 1].</param>
/// <param name="Std">Normalisation standard deviation.</param>
public sealed record Preprocessing(
    [property: JsonPropertyName("image_size")] int ImageSize,
    [property: JsonPropertyName("input_size")] int InputSize,
    [property: JsonPropertyName("mean")] float Mean,
    [property: JsonPropertyName("std")] float Std)
{
    public Normalization Normalization => new(Mean, Std);

    public static Preprocessing For(LabeledImages images, Normalization normalization, int inputSize) =>
        new(images.Height, inputSize, normalization.Mean, normalization.Std);

    public ImageTransform EvaluationTransform() => ImageTransform.ForEvaluation(Normalization, InputSize);
}
