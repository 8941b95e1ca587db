using AdaTSQ.Abstractions;

namespace AdaTSQ.Calibration;

/// <summary>Calibration could not produce usable statistics (no data, a layer never called, non-finite inputs).</summary>
public sealed class CalibrationException(string message) : AdaTSQException(message);
