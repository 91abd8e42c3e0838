"""The ONNX Runtime INT8 baselines a user would reach for, built from the same fp32.onnx."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)


class _Frames(CalibrationDataReader):
    def __init__(self, images: list[np.ndarray]) -> None:
        self._it = iter([{"image": x} for x in images])

    def get_next(self):
        return next(self._it, None)


def int8_dynamic(fp32: Path, out: Path) -> Path:
    """quantize_dynamic: INT8 weights, activations quantized per call (no calibration)."""
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    return out


def int8_static_minmax(fp32: Path, out: Path, images: list[np.ndarray]) -> Path:
    """quantize_static, QDQ, min-max calibration on the same frames: ORT's own W8A8 PTQ."""
    quantize_static(str(fp32), str(out), _Frames(images), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax)
    return out
