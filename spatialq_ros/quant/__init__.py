"""W4A8 quantization: quantizers, GPLQ and min-max calibration, the artifact, ONNX export."""
