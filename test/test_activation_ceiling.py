"""The activation ceiling: activations alone rounded per channel, weights float, the model itself untouched."""

from __future__ import annotations

import pytest
import torch

from checkpoint_helpers import outlier_model

from spatialq_ros.quant.activation_ceiling import ceiling_model
from spatialq_ros.quant.report import patch_cosine


@pytest.mark.parametrize("arch", ["vits14", "vits16"])
def test_the_ceiling_rises_with_the_bits_and_leaves_the_model_as_it_was(arch):
    model = outlier_model(2, arch)
    side = 4 * model.patch_size
    images = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = model.extract(images).patch_tokens
        tokens = [ceiling_model(model, bits).extract(images).patch_tokens for bits in (4, 8, 12)]
        again = model.extract(images).patch_tokens
    cosines = [patch_cosine(t, exact) for t in tokens]
    assert cosines[0] < cosines[1] < cosines[2] and cosines[2] > 0.9999 and not torch.equal(tokens[2], exact)
    assert torch.equal(again, exact)  # the hooks went on a copy


def test_every_quantized_input_is_on_its_grid_and_the_pixels_are_read_as_they_are():
    model = outlier_model(1)
    seen = {}
    rounded = ceiling_model(model, 3)
    for name in ("patch_embed.proj", "blocks.0.attn.qkv", "blocks.0.mlp.fc2"):
        rounded.get_submodule(name).register_forward_pre_hook(lambda m, args, name=name: seen.update({name: args[0]}))
    frame = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        rounded.extract(frame)
    assert torch.equal(seen.pop("patch_embed.proj"), frame)  # GPLQ reads the 8-bit pixels themselves (pixel_input)
    for name, x in seen.items():  # after the ceiling's hook: at most 8 levels per channel (3 bits)
        flat = x.reshape(-1, x.shape[-1])
        assert max(len(torch.unique(flat[:, c])) for c in range(flat.shape[1])) <= 8, name


def test_bits_out_of_range_are_refused():
    with pytest.raises(ValueError, match="activation bits 1"):
        ceiling_model(outlier_model(1), 1)
