"""DINOv3 (RoPE, storage tokens, LayerNorm eps 1e-5, patch 16) through GPLQ calibration and the artifact: every
ONNX graph computes what the torch model computes, on a non-square grid so that transposed RoPE tables show."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
import torch
from safetensors.numpy import load_file

from checkpoint_helpers import outlier_model

from spatialq_ros.backbone.preprocess import IMAGENET_MEAN, IMAGENET_STD
from spatialq_ros.backbone.synthetic import synthetic_state_dict
from spatialq_ros.quant.artifact import ONNX_FILES, write_artifact
from spatialq_ros.quant.gplq import CalibrationConfig, calibrate
from spatialq_ros.quant.qwt import CompensatedBlock
from spatialq_ros.runtime.onnx_engine import OnnxEngine
from spatialq_ros.sim.bag import read_frames
from spatialq_ros.sim.simulate import SimConfig, simulate

SIZE = (64, 48)  # (W, H): a 3 x 4 grid of 16 px patches


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Simulated frames cut to SIZE, normalised as preprocess does."""
    bag = tmp_path_factory.mktemp("q3") / "flight"
    simulate(bag, SimConfig(frames=24, size=(112, 112), seed=1), progress=False)
    rgbs = [np.ascontiguousarray(f.rgb[: SIZE[1], : SIZE[0]]) for f in read_frames(bag)]
    images = np.stack([((r / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1) for r in rgbs])
    return rgbs, torch.from_numpy(images.astype(np.float32))


def relative(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))


def test_dinov3_artifact_graphs_match_torch(frames, tmp_path):
    """As test_artifact_onnx_matches_torch for DINOv2: every W4A8 graph agrees with the fake-quant model (QwT
    included, so the compensated blocks got the RoPE tables too), fp32.onnx with the float model."""
    torch.set_num_threads(2)
    rgbs, images = frames
    model = outlier_model(depth=1, arch="vits16")
    q, log = calibrate(model, images[:12], rgbs[:12], CalibrationConfig(qwt=True), progress=False)
    assert isinstance(q.blocks[0], CompensatedBlock) and len(log.losses) == 2
    quant = write_artifact(tmp_path, q, model, {"method": "gplq", "arch": "vits16-d1", "trained": False}, SIZE, -1)
    assert {k: quant[k] for k in ("family", "pos_encoding", "rope_base", "layer_norm_eps", "patch_size")} == {
        "family": "dinov3", "pos_encoding": "rope", "rope_base": 100.0, "layer_norm_eps": 1e-5, "patch_size": 16}
    assert json.loads((tmp_path / "quant.json").read_text())["fingerprint"] == quant["fingerprint"]
    stored = load_file(str(tmp_path / "weights.safetensors"))
    assert "pos_embed" not in stored and stored["register_tokens"].shape == (1, 4, 384)
    assert np.array_equal(stored["rope_embed.periods"], model.rope_embed.periods.numpy())
    for name in ONNX_FILES.values():
        graph = onnx.load(str(tmp_path / name)).graph
        eps = {a.f for n in graph.node if n.op_type == "LayerNormalization" for a in n.attribute if a.name == "epsilon"}
        assert eps == {np.float32(1e-5)}, name
    x = images[20:21]
    with torch.no_grad():  # float64 twin: float32 torch flips codes on rounding boundaries itself (test_quant.py)
        ref_q = copy.deepcopy(q).double().extract(x.double(), facet_layer=-1, facet="value")
        ref_f = model.extract(x, facet_layer=-1, facet="value")
    for graph in ("qdq", "int4", "cpu"):
        out = OnnxEngine(tmp_path, graph).infer_normalized(x.numpy())
        assert out.patch_tokens.shape == (3, 4, 384), graph
        for ours, ref in ((out.patch_tokens, ref_q.patch_tokens), (out.value_facet, ref_q.facet)):
            assert relative(ours, ref[0].float().numpy()) <= 1e-3, graph
    fp = OnnxEngine(tmp_path, "fp32").infer_normalized(x.numpy())
    assert relative(fp.patch_tokens, ref_f.patch_tokens[0].numpy()) < 1e-5
    assert relative(fp.cls_token, ref_f.cls_token[0].numpy()) < 1e-5
    assert relative(fp.value_facet, ref_f.facet[0].numpy()) < 1e-5  # the value facet is never rotated


def test_dinov3_graphs_rotate_queries_and_keys(frames, tmp_path):
    """Two blocks, min-max: the cpu graph (ORT's RotaryEmbedding and MultiHeadAttention) and the standard-ONNX ones
    agree with torch; the RoPE is in the graphs: the same weights with the rotation left out (tables of no angle)
    differ."""
    rgbs, images = frames
    model = outlier_model(depth=2, arch="vits16")
    q, _ = calibrate(model, images[:8], rgbs[:8], CalibrationConfig(method="minmax"), progress=False)
    write_artifact(tmp_path, q, model, {"method": "minmax", "arch": "vits16-d2", "trained": False}, SIZE, 0)
    x = images[20:21]
    with torch.no_grad():
        ref_q = q.extract(x, facet_layer=0, facet="value")
        ref_f = model.extract(x, facet_layer=0, facet="value")
        model.rope_embed.periods.fill_(float("inf"))  # every angle 0: no rotation
        unrotated = model.extract(x).patch_tokens[0].numpy()
    for name in ONNX_FILES.values():  # ORT's RoPE kernel in the cpu graph only; TensorRT parses the others
        rotary = sum(n.op_type == "RotaryEmbedding" for n in onnx.load(str(tmp_path / name)).graph.node)
        assert rotary == (2 * 2 if name == "model_cpu.onnx" else 0), name
    for graph in ("qdq", "int4", "cpu"):
        out = OnnxEngine(tmp_path, graph).infer_normalized(x.numpy())
        assert relative(out.patch_tokens, ref_q.patch_tokens[0].numpy()) <= 1e-2, graph
        assert relative(out.value_facet, ref_q.facet[0].numpy()) <= 1e-3, graph
    fp = OnnxEngine(tmp_path, "fp32").infer_normalized(x.numpy())
    assert relative(fp.patch_tokens, ref_f.patch_tokens[0].numpy()) < 1e-5
    assert relative(fp.patch_tokens, unrotated) > 1e-3


def test_calibrate_cli_on_an_official_dinov3_checkpoint(tmp_path, monkeypatch):
    """`spatialq calibrate --model <official DINOv3 .pth>` end to end (GPLQ with QwT, the held-out report, the
    heads), and OnnxEngine on the artifact gives the 16 px grid."""
    from checkpoint_helpers import write_official_pth

    from spatialq_ros.cli import main

    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    checkpoint = write_official_pth(tmp_path / "dinov3_vits16_d2.pth", synthetic_state_dict("vits16", seed=3, depth=2))
    simulate(tmp_path / "flight", SimConfig(frames=8, size=SIZE, seed=2), progress=False)
    out = tmp_path / "art"
    assert main(["calibrate", "--bag", str(tmp_path / "flight"), "--model", str(checkpoint), "--size", "64x48",
                 "--frames", "6", "--holdout", "2", "--qwt", "--out", str(out)]) == 0
    quant = json.loads((out / "quant.json").read_text())
    assert (quant["family"], quant["arch"], quant["qwt"]) == ("dinov3", "vits16-d2", True)
    assert set(quant["rotated_heads"]) <= {0}  # block 1 holds the value facet: never rotated
    assert "- head rotation (a Hadamard per head" in (out / "report.md").read_text()
    report = json.loads((out / "report.json").read_text())
    assert report["onnx_vs_torch_rel_error"] < 1e-2 and 0 < report["fidelity"]["gplq"]["patch_cosine"] <= 1
    rgb = np.zeros((100, 150, 3), np.uint8)
    for graph in ONNX_FILES:
        features = OnnxEngine(out, graph).infer(rgb)
        assert features.patch_tokens.shape == features.value_facet.shape == (3, 4, 384), graph
