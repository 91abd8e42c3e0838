"""The patch embedding's INT8 input is the frame's own 8-bit pixels, so its quantizer rounds nothing.

The backbone reads the normalised frame, (p/255 - mean_c) / std_c: one lattice per colour channel, each with its
own step and offset. A per-tensor INT8 window over it rounds every pixel again onto a grid a little coarser or
finer and shifted. On the untrained ViT-B/14 and held-out-a zoo members that rounding alone (FP32 model, nothing
else quantized) cost 0.07-0.08 of patch NN agreement. Folding the normalisation into the conv and undoing it on
the input puts the 256 codes on the 256 pixel values: the conv reads (p - z) / 255, step 1/255, codes -z..255-z.

z is the mean's code, so the input stays about centred. Reading p/255 itself (z = 0) gave the 4-bit weights'
rounding error a constant part, error x mean, that the normalised input never showed: on a two-block test model
it quadrupled the final tokens' error. With z the constant part is what is left of the mean per channel (at most
0.04 of a full-scale pixel for ImageNet's mean).

The float function is unchanged; the deployed graphs undo the normalisation with one Mul and one Add on the
image's patches, and z is the uint8 zero point (a shifted window in the QDQ graphs, as input_window's).
"""

from __future__ import annotations

import numpy as np
import torch

from .qlinear import QuantLinear

PIXEL_STEP = 1.0 / 255.0


@torch.no_grad()
def read_pixels(layer: QuantLinear, mean: np.ndarray, std: np.ndarray) -> None:
    """Turn the patch-embedding conv, which reads (p/255 - mean) / std, into one that reads (p - z)/255 on the
    pixel grid, z the mean's code."""
    conv = layer.inner
    if not isinstance(conv, torch.nn.Conv2d):
        raise ValueError("pixel input is for the patch-embedding conv")
    mean = torch.as_tensor(mean, dtype=conv.weight.dtype, device=conv.weight.device)
    std = torch.as_tensor(std, dtype=conv.weight.dtype, device=conv.weight.device)
    z = int(round(float(mean.mean()) * 255))
    left = mean - z * PIXEL_STEP  # what stays of the mean per channel once the input is centred on z
    conv.weight.div_(std[None, :, None, None])
    conv.bias.sub_((conv.weight * left[None, :, None, None]).sum(dim=(1, 2, 3)))
    layer.set_input_affine(std, left)
    layer.act_scale.fill_(PIXEL_STEP)
    layer.act_scale.requires_grad_(False)  # the pixel grid is exact: stage 1 leaves it where it is
    layer.act_low = -z
