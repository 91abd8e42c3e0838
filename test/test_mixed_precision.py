"""7-bit weights where measured sensitivity calls for them: the choice, the probe, and the layers through the artifact
and every graph."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto
from safetensors.numpy import load_file

from checkpoint_helpers import outlier_model
from frame_helpers import simulated_frames

from spatialq_ros.quant.artifact import write_artifact
from spatialq_ros.quant.fake_quant import INT4, codes, signed_range
from spatialq_ros.quant.gplq import CalibrationConfig, calibrate
from spatialq_ros.quant.mixed_precision import (MIN_GAIN, WIDE_BITS, Probe, choose, probe_frames, sensitivity,
                                                widen_where_it_pays)
from spatialq_ros.quant.qlinear import QuantLinear
from spatialq_ros.quant.weight_scales import weight_scales
from spatialq_ros.runtime.onnx_engine import OnnxEngine

SIZE = (112, 112)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return simulated_frames(tmp_path_factory.mktemp("mp"), 24, seed=3)


def quantized_layers(model) -> dict[str, QuantLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantLinear)}


def test_choice_is_by_gain_per_weight_within_the_share():
    gains = {"a": 0.5, "b": 0.3, "c": 0.01, "d": 0.2}
    sizes = {"a": 100, "b": 10, "c": 1, "d": 50}
    # per weight: b 0.03, c 0.01 (below the minimum gain), a 0.005, d 0.004
    assert choose(gains, sizes, 64) == ["b", "d"]
    assert choose(gains, sizes, 161) == ["b", "a", "d"]
    assert choose(gains, sizes, 0) == []


def test_the_probe_holds_at_most_its_patches_and_at_least_two_frames():
    model = outlier_model(depth=1)
    for side, frames in ((112, 8), (224, 8), (448, 2), (896, 2)):
        assert len(probe_frames(model, torch.zeros(10, 3, side, side))) == frames, side
    assert len(probe_frames(model, torch.zeros(3, 3, 224, 224))) == 3  # fewer given: all of them


@pytest.fixture(scope="module")
def at_4_bits(frames):
    """A depth-2 model and its calibration at 4 bits rounded to nearest, none widened."""
    torch.set_num_threads(2)
    rgbs, images = frames
    model = outlier_model(depth=2)
    q, _ = calibrate(model, images[:8], rgbs[:8], CalibrationConfig(error_feedback=False, wide_share=0), progress=False)
    return model, q


def fresh_copy(at_4_bits):
    """The model, a copy of its calibration to change, its layers, and their float weights (rounding to nearest
    keeps them float)."""
    model, q = at_4_bits
    q = copy.deepcopy(q)
    layers = quantized_layers(q)
    return model, q, layers, {n: m.inner.weight.detach().clone() for n, m in layers.items()}


def test_widening_goes_in_rounds_until_no_layer_pays_and_stays_within_the_share(frames, at_4_bits):
    images = frames[1]
    model, q, layers, floats = fresh_copy(at_4_bits)
    spoiled = ("blocks.0.mlp.fc1", "blocks.1.attn.qkv")
    with torch.no_grad():
        for name in spoiled:
            layers[name].set_weight_scale(layers[name].weight_scale * 6)
    rounds = []

    def widen(chosen):
        rounds.append(sorted(chosen))
        for name, layer in chosen.items():
            layer.inner.weight.copy_(floats[name])
            layer.weight_bits = WIDE_BITS
            layer.set_weight_scale(weight_scales(layer.quantizable_weight(), "mse", bits=WIDE_BITS))

    sizes = {n: m.inner.weight.numel() for n, m in layers.items()}
    found = widen_where_it_pays(q, model, layers, floats, images[:8], 0.5, widen, progress=False)
    assert rounds and set(spoiled) <= set(found.gains) == {n for r in rounds for n in r}
    assert len({n for r in rounds for n in r}) == sum(len(r) for r in rounds)  # no layer widened twice
    assert sum(sizes[n] for n in found.gains) <= 0.5 * sum(sizes.values())
    assert found.error_after < found.error and all(g >= MIN_GAIN for g in found.gains.values())
    with torch.no_grad():  # the last round found nothing left worth widening within the budget, or the rounds ran out
        assert found.error_after == pytest.approx(Probe(q, model, images[:8]).error(), rel=1e-6)


def test_sensitivity_finds_the_layer_that_rounding_hurts_and_leaves_every_layer_as_it_was(frames, at_4_bits):
    images = frames[1]
    model, q, layers, floats = fresh_copy(at_4_bits)
    spoiled = "blocks.1.mlp.fc1"
    fair = sensitivity(q, model, layers, floats, images[:8], progress=False)
    with torch.no_grad():
        layers[spoiled].set_weight_scale(layers[spoiled].weight_scale * 4)  # a grid 4x too coarse
    before = {n: (m.quantized_weight().clone(), m.weight_scale.clone()) for n, m in layers.items()}
    found = sensitivity(q, model, layers, floats, images[:8], progress=False)
    assert found.error > fair.error
    jumps = {n: found.gains[n] - fair.gains[n] for n in layers}
    assert max(jumps, key=jumps.get) == spoiled and found.gains[spoiled] > 0.2 > fair.gains[spoiled]
    for n, m in layers.items():
        assert torch.equal(m.quantized_weight(), before[n][0]) and torch.equal(m.weight_scale, before[n][1]), n


def test_wide_layers_lower_the_probe_error_and_go_through_the_artifact_and_every_graph(frames, tmp_path):
    torch.set_num_threads(2)
    rgbs, images = frames
    model = outlier_model(depth=1)
    qw, log = calibrate(model, images[:12], rgbs[:12], CalibrationConfig(wide_share=0.5), progress=False)
    q4, log4 = calibrate(model, images[:12], rgbs[:12], CalibrationConfig(wide_share=0), progress=False)
    layers = quantized_layers(qw)
    assert log.wide and not log4.wide and log4.probe_error is None and log.probe_error[1] < log.probe_error[0]
    sizes = {n: m.inner.weight.numel() for n, m in layers.items()}
    assert sum(sizes[n] for n in log.wide) <= 0.5 * sum(sizes.values())
    with torch.no_grad():
        assert Probe(qw, model, images[:8]).error() < Probe(q4, model, images[:8]).error()
    for name, layer in layers.items():
        wide = name in log.wide
        assert layer.weight_bits == (WIDE_BITS if wide else 4)
        c = codes(layer.quantized_weight(), layer.weight_scale.reshape(-1, *[1] * (layer.weight.ndim - 1)),
                  signed_range(WIDE_BITS) if wide else INT4)
        assert torch.allclose(c.float() * layer.weight_scale.reshape(-1, *[1] * (layer.weight.ndim - 1)),
                              layer.quantized_weight(), atol=1e-6)  # on its grid
        assert (int(c.abs().max()) > 8) == wide  # wide layers use the wider code range

    quant = write_artifact(tmp_path, qw, model, {"method": "gplq", "arch": "vits14-d1", "trained": False}, SIZE, -1)
    assert quant["layer_weight_bits"] == {n: WIDE_BITS if n in log.wide else 4 for n in layers}
    stored = load_file(str(tmp_path / "weights.safetensors"))
    for name in layers:
        assert (f"{name}.qweight8" in stored) == (name in log.wide) != (f"{name}.qweight" in stored)
        if name in log.wide:  # within [-64, 63]: no uint8 x int8 pair saturates int16 in x86 kernels without VNNI
            assert stored[f"{name}.qweight8"].min() >= -64 and stored[f"{name}.qweight8"].max() <= 63
    int4_inits = onnx.load(str(tmp_path / "model_int4.onnx")).graph.initializer
    int4_weights = {i.name.split(".w4")[0] for i in int4_inits
                    if i.data_type == TensorProto.INT4 and ".w4_" in i.name}
    hints = {"patch_embed.proj": "patch_embed", "blocks.0.attn.qkv": "blocks.0.qkv", "blocks.0.attn.proj": "blocks.0.proj",
             "blocks.0.mlp.fc1": "blocks.0.fc1", "blocks.0.mlp.fc2": "blocks.0.fc2"}
    assert int4_weights == {hints[n] for n in layers if n not in log.wide}
    x = images[20:21]
    # in float64: float32 torch flips INT8 codes that sit on a rounding boundary (the report's floor)
    with torch.no_grad():
        ref = copy.deepcopy(qw).double().extract(x.double(), facet_layer=-1, facet="value")
    for graph in ("qdq", "int4", "cpu"):
        out = OnnxEngine(tmp_path, graph).infer_normalized(x.numpy())
        for ours, want in ((out.patch_tokens, ref.patch_tokens), (out.value_facet, ref.facet)):
            want = want[0].float().numpy()
            assert np.linalg.norm(ours - want) / np.linalg.norm(want) <= 1e-3, graph
