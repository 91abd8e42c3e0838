"""The projection's input ranges folded into the value rows: the float model is unchanged, the ranges narrow at the
chosen strength, the facet block is left alone, and the graphs of a folded model compute what its fake-quant model
does."""

from __future__ import annotations

import copy

import pytest
import torch

from checkpoint_helpers import outlier_model
from frame_helpers import simulated_frames
from graph_helpers import assert_graphs_follow_the_fake_quant_model, relative

from spatialq_ros.quant.fold import fold_value_ranges
from spatialq_ros.quant.gplq import CalibrationConfig, calibrate
from spatialq_ros.quant.placement import value_projections
from spatialq_ros.quant.stats import collect_input_stats

SIZE = (112, 112)


def spread(channel_max: torch.Tensor) -> float:
    return float(channel_max.max() / channel_max.min())


@pytest.mark.parametrize("arch", ["vits14_reg4", "vits16"])  # DINOv3: RoPE on q and k, the k-bias mask
def test_the_fold_keeps_the_float_model_and_narrows_the_projection_ranges(arch):
    model = outlier_model(depth=2, arch=arch)
    patch = model.patch_size
    x = torch.randn(2, 3, 4 * patch, 3 * patch, generator=torch.Generator().manual_seed(0))  # not square
    names = value_projections(model, facet_layer=-1)
    assert names == ["blocks.0.attn.proj"]
    before = collect_input_stats(model, names, [x])
    folded = copy.deepcopy(model)
    fold_value_ranges(folded, before, {names[0]: 0.5})
    after = collect_input_stats(folded, names, [x])
    # channel c is divided by (s_c / mean s)^0.5: the spread of the ranges is its square root
    assert spread(after[names[0]].channel_max) == pytest.approx(spread(before[names[0]].channel_max) ** 0.5, rel=1e-3)
    assert torch.equal(folded.blocks[1].attn.qkv.weight, model.blocks[1].attn.qkv.weight)
    with torch.no_grad():
        ref, out = model.extract(x), folded.extract(x)
    assert relative(out.patch_tokens, ref.patch_tokens) < 1e-5
    assert relative(out.cls_token, ref.cls_token) < 1e-5


def test_value_projections_leave_out_the_facet_block():
    model = outlier_model(depth=3)
    assert value_projections(model, facet_layer=1) == ["blocks.0.attn.proj", "blocks.2.attn.proj"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return simulated_frames(tmp_path_factory.mktemp("vfold"), 10, seed=3)


def test_the_graphs_of_a_folded_model_compute_what_its_fake_quant_model_does(frames, tmp_path):
    torch.set_num_threads(2)
    rgbs, images = frames
    model = outlier_model(depth=2)
    config = CalibrationConfig(wide_share=0, head_rotation=False)
    q, log = calibrate(model, images[:8], rgbs[:8], config, progress=False)
    assert log.layer_choices["blocks.0.attn.proj"]["alpha"] == 0.5  # recorded where quant.json and the report read
    assert log.layer_choices["blocks.1.attn.proj"]["alpha"] is None  # the facet block (-1)
    _, unfolded = calibrate(model, images[:8], rgbs[:8], CalibrationConfig(wide_share=0, head_rotation=False,
                                                                         value_alpha=0), progress=False)
    assert unfolded.layer_choices["blocks.0.attn.proj"]["alpha"] is None
    assert_graphs_follow_the_fake_quant_model(q, model, images[9:10], tmp_path, SIZE)
