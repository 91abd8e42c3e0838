"""Loud marking of outputs that come from untrained (seeded random) weights."""

import sys

UNTRAINED = "UNTRAINED"
UNTRAINED_WARNING = (
    "UNTRAINED: no real DINOv2 or DINOv3 weights found; using a seeded random ViT. "
    "Features, pictures and metrics are NOT meaningful. See `spatialq models fetch`."
)


def warn_untrained() -> None:
    print(f"[spatialq] {UNTRAINED_WARNING}", file=sys.stderr)
