"""Node parameters declared once with descriptions and ranges, and validated before use (one clear line each)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterValueException, ParameterException

from ..errors import SpatialqError


@dataclass(frozen=True)
class Spec:
    name: str
    default: object
    about: str
    range: tuple | None = None  # (low, high), inclusive
    path: str = ""  # "file": must exist when set; "model": a checkpoint file/folder or an artifact folder
    size: bool = False  # "WxH"; the engine checks it against the backbone's patch when it is built
    choices: tuple = ()  # the only values allowed, when given

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(description=self.about)
        if self.range is not None and not isinstance(self.default, bool):
            low, high = self.range
            if isinstance(self.default, int):
                d.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
            elif isinstance(self.default, float):
                d.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        return d


def declare(node, specs: tuple[Spec, ...]) -> None:
    """Declare every parameter; an override outside its range or of the wrong type becomes one SpatialqError."""
    for spec in specs:
        try:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())
        except (InvalidParameterValueException, ParameterException, TypeError) as exc:
            raise SpatialqError(f"parameter {spec.name}: {_first_line(exc)}") from None


def read_parameters(node, specs: tuple[Spec, ...]) -> dict:
    values = {spec.name: node.get_parameter(spec.name).value for spec in specs}
    for spec in specs:
        check(spec, values[spec.name])
    return values


def check(spec: Spec, value) -> None:
    if spec.choices and value not in spec.choices:
        raise SpatialqError(f"parameter {spec.name}={value!r}: choose {' or '.join(map(str, spec.choices))}")
    if spec.range is not None and not isinstance(value, bool) and isinstance(value, (int, float)):
        low, high = spec.range
        if not low <= value <= high:
            raise SpatialqError(f"parameter {spec.name}={value}: must be between {low} and {high}")
    if spec.size:
        from ..backbone.preprocess import parse_size

        parse_size(value)
    if spec.path and value:
        path = Path(value)
        if not path.exists():
            raise SpatialqError(f"parameter {spec.name}: {value} does not exist")
        if spec.path == "file" and not path.is_file():
            raise SpatialqError(f"parameter {spec.name}: {value} is not a file")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
