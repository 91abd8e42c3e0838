"""Simulated calibration frames for the quantization tests: RGB and preprocessed, from one seeded flight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spatialq_ros.backbone.preprocess import preprocess
from spatialq_ros.sim.bag import read_frames
from spatialq_ros.sim.simulate import SimConfig, simulate


def simulated_frames(folder: Path, frames: int, seed: int, size: tuple[int, int] = (112, 112)
                     ) -> tuple[list[np.ndarray], torch.Tensor]:
    """A flight of `frames` frames written under `folder`: their RGB, and the (N, 3, H, W) model input."""
    bag = folder / "flight"
    simulate(bag, SimConfig(frames=frames, size=size, seed=seed), progress=False)
    rgbs = [f.rgb for f in read_frames(bag)]
    return rgbs, torch.from_numpy(np.concatenate([preprocess(r) for r in rgbs]))
