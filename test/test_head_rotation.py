"""The head-wise Hadamard rotation: the float model is unchanged, calibration rotates the blocks whose projection
it helps and never the facet block, and the graphs of a rotated model compute what its fake-quant model does."""

from __future__ import annotations

import copy

import pytest
import torch

from checkpoint_helpers import outlier_model
from frame_helpers import simulated_frames
from graph_helpers import assert_graphs_follow_the_fake_quant_model, relative

from spatialq_ros.quant.gplq import CalibrationConfig, calibrate
from spatialq_ros.quant.head_rotation import choose_rotations, hadamard, rotate_head_outputs
from spatialq_ros.quant.stats import collect_input_stats

SIZE = (112, 112)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return simulated_frames(tmp_path_factory.mktemp("rot"), 14, seed=2)


def test_hadamard_is_orthonormal_and_needs_a_power_of_two():
    h = hadamard(64)
    assert torch.allclose(h @ h.T, torch.eye(64), atol=1e-6) and set(h.abs().unique().tolist()) == {0.125}
    with pytest.raises(ValueError, match="power of two"):
        hadamard(48)


@pytest.mark.parametrize("arch", ["vits14_reg4", "vits16"])  # DINOv3: RoPE on q and k, the k-bias mask
def test_rotation_leaves_the_float_model_unchanged(arch):
    model = outlier_model(depth=2, arch=arch)
    rotated = copy.deepcopy(model)
    rotate_head_outputs(rotated, [0, 1])
    assert not torch.equal(rotated.blocks[0].attn.proj.weight, model.blocks[0].attn.proj.weight)
    patch = model.patch_size
    x = torch.randn(2, 3, 4 * patch, 3 * patch)  # not square
    with torch.no_grad():
        ref, out = model.extract(x), rotated.extract(x)
    assert relative(out.patch_tokens, ref.patch_tokens) < 1e-5
    assert relative(out.cls_token, ref.cls_token) < 1e-5


def with_heavy_tailed_projection(depth: int):
    """The outlier model with block 0's projection weights drawn from a Student-t (nu 3): a few large weights set
    each row's 4-bit step, and the rotation spreads them over the head's columns."""
    model = outlier_model(depth=depth)
    weight = model.blocks[0].attn.proj.weight
    torch.manual_seed(0)
    t = torch.distributions.StudentT(3.0).sample(weight.shape)
    with torch.no_grad():
        weight.copy_(t / t.std() * weight.std())
    return model


def test_the_search_rotates_where_it_pays_and_never_the_facet_block():
    model = with_heavy_tailed_projection(depth=2)
    names = [f"blocks.{i}.attn.proj" for i in range(2)]
    stats = collect_input_stats(model, names, [torch.randn(4, 3, 56, 56, generator=torch.Generator().manual_seed(1))])
    assert 0 in choose_rotations(model, stats, 99.99, 8, facet_layer=-1)
    assert choose_rotations(model, stats, 99.99, 8, facet_layer=0) in ([], [1])


def test_the_graphs_of_a_rotated_model_compute_what_its_fake_quant_model_does(frames, tmp_path):
    torch.set_num_threads(2)
    rgbs, images = frames
    model = with_heavy_tailed_projection(depth=2)
    q, log = calibrate(model, images[:8], rgbs[:8], CalibrationConfig(wide_share=0), progress=False)
    assert log.rotated_heads == [0]  # block 1 holds the facet (-1)
    assert_graphs_follow_the_fake_quant_model(q, model, images[12:13], tmp_path, SIZE)
