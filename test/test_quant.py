"""W4A8: quantizers, GPLQ vs min-max on the outlier model, the artifact, ONNX Runtime parity, deploy path."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from checkpoint_helpers import outlier_model

from spatialq_ros.quant.artifact import ONNX_FILES, write_artifact
from spatialq_ros.quant.fake_quant import INT4, codes, fake_quant
from spatialq_ros.quant.gplq import CalibrationConfig, calibrate
from spatialq_ros.quant.onnx_graph import IR_VERSION
from spatialq_ros.quant.pack import pack_int4, unpack_int4
from spatialq_ros.quant.report import fidelity
from spatialq_ros.quant.weight_scales import weight_scales
from spatialq_ros.runtime.onnx_engine import OnnxEngine
from spatialq_ros.sim.bag import read_frames
from spatialq_ros.sim.simulate import SimConfig, simulate

SIZE = (112, 112)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from spatialq_ros.backbone.preprocess import preprocess

    bag = tmp_path_factory.mktemp("q") / "flight"
    simulate(bag, SimConfig(frames=80, size=SIZE, seed=1), progress=False)
    rgbs = [f.rgb for i, f in enumerate(read_frames(bag)) if i % 2 == 0]
    return rgbs, torch.from_numpy(np.concatenate([preprocess(r) for r in rgbs]))


def test_int4_codes_pack_and_mse_scales():
    torch.manual_seed(0)
    w = torch.randn(16, 40)
    w[:, 3] *= 20  # an outlier column
    for method in ("minmax", "mse"):
        s = weight_scales(w, method)
        c = codes(w, s[:, None], INT4)
        assert c.min() >= -8 and c.max() <= 7
    err = {m: (fake_quant(w, weight_scales(w, m)[:, None], INT4) - w).pow(2).sum() for m in ("minmax", "mse")}
    assert err["mse"] <= err["minmax"]
    c = np.random.default_rng(0).integers(-8, 8, 101).astype(np.int8)
    assert np.array_equal(unpack_int4(pack_int4(c), 101), c) and pack_int4(c).size == 51


def test_gplq_beats_minmax_on_the_outlier_model(frames):
    torch.set_num_threads(2)
    rgbs, images = frames
    model = outlier_model(depth=6)
    cal, held = images[:32], images[32:]
    scores = {}
    for name, config in (("minmax", CalibrationConfig(method="minmax")),
                         ("gplq nearest", CalibrationConfig(qwt=True, error_feedback=False)),
                         ("gplq", CalibrationConfig(qwt=True))):
        q, _ = calibrate(model, cal, rgbs[:32], config, progress=False)
        scores[name] = fidelity(model, q, held)["patch_cosine"]
    assert scores["gplq"] > scores["gplq nearest"] > scores["minmax"], scores  # error feedback helps too


def test_stage_one_in_passes_of_one_frame_takes_the_same_steps(frames):
    """Stage 1 splits a batch into passes to bound memory at large sizes. The passes add up to the batch's loss
    (the first batch's, before any step, to float rounding); after an AdamW step, whose update divides by
    the gradient's own size, near-zero gradient entries that differ by rounding move the scales apart by
    about one learning rate."""
    torch.set_num_threads(2)
    rgbs, images = frames
    model = outlier_model(depth=2)
    logs = [calibrate(model, images[:16], rgbs[:16], CalibrationConfig(pass_tokens=tokens, error_feedback=False),
                      progress=False)[1] for tokens in (10**6, 1)]
    assert len(logs[0].losses) == 2 and logs[0].losses[0] == pytest.approx(logs[1].losses[0], rel=1e-6)
    assert logs[0].losses[1] == pytest.approx(logs[1].losses[1], rel=1e-2)
    for name, scale in logs[0].act_scales.items():
        assert logs[1].act_scales[name] == pytest.approx(scale, rel=1e-3), name


def test_massive_activation_channels_stay_float(frames):
    """The outlier model's high-norm unit (thousands, at ~2 % of tokens) survives only as a float channel:
    one INT8 scale either clips it, erasing those tokens, or spends all its codes on it."""
    torch.set_num_threads(2)
    rgbs, images = frames
    model = outlier_model(depth=4)  # the high-norm unit sits in block 1's fc2 input
    cal, held = images[:16], images[32:36]
    with torch.no_grad():
        tokens = model.prepare_tokens(held)
        for block in model.blocks[:2]:
            tokens, _ = block(tokens)
        norms = tokens.norm(dim=-1)[:, 1:]
        high = norms > 10 * norms.median()
        ref = model.extract(held).patch_tokens.reshape(len(held), -1, 384)
    assert 0 < high.float().mean() < 0.1
    kept = {}
    for factor, search in ((16.0, False), (0.0, False), (0.0, True)):
        config = CalibrationConfig(massive_factor=factor, alpha=0.5, float_search=search)
        q, log = calibrate(model, cal, rgbs[:16], config, progress=False)
        with torch.no_grad():
            out = q.extract(held).patch_tokens.reshape(len(held), -1, 384)
        kept[factor, search] = (log.float_channels, float(torch.cosine_similarity(out, ref, dim=-1)[high].mean()))
    assert kept[16.0, False][0] == {"blocks.1.mlp.fc2": [0]} and kept[0.0, False][0] == {}
    assert kept[16.0, False][1] > 0.95 > 0.5 > kept[0.0, False][1], kept
    # the per-layer search finds the unit from the layer's output error alone, with no threshold
    assert 0 in kept[0.0, True][0]["blocks.1.mlp.fc2"] and kept[0.0, True][1] > 0.95, kept


@pytest.mark.parametrize("depth, tolerance", [(1, 1e-3), (3, 2e-2)])
def test_artifact_onnx_matches_torch(frames, tmp_path, depth, tolerance):
    """One block agrees to 1e-3 (the graph computes what the fake-quant model computes); with depth,
    activations that sit on a rounding boundary flip by one code in one engine and not the other, and
    the random outlier model amplifies that: 1e-2 is reached at 3 blocks on random inputs, not on frames.
    The reference is the fake-quant model in float64: float32 torch flips such codes itself (the report's floor),
    more often once the 7-bit layers make the first blocks' outputs finer."""
    torch.set_num_threads(2)
    rgbs, images = frames
    model = outlier_model(depth=depth)
    q, log = calibrate(model, images[:16], rgbs[:16], CalibrationConfig(qwt=True), progress=False)
    quant = write_artifact(tmp_path, q, model, {"method": "gplq", "arch": "vits14-d", "trained": False}, SIZE, -1)
    assert quant["format"] == "spatialq-w4a8" and len(quant["act_scales"]) == 1 + 4 * depth and quant["qwt"]
    assert 0 in quant["float_channels"]["blocks.0.mlp.fc2"]  # the graphs carry the float side path
    assert quant["act_zero_points"]["blocks.0.mlp.fc2"] < 16  # and a window cut to GELU's output (input_window)
    assert quant["pixel_input"] == ["patch_embed.proj"] and quant["act_zero_points"]["patch_embed.proj"] == 114  # ImageNet's mean, 0.449
    assert set(log.layer_choices) == {n for n in quant["act_scales"] if n != "patch_embed.proj"}
    for name in ONNX_FILES.values():  # loadable by ONNX Runtime releases older than the onnx package here
        assert onnx.load(str(tmp_path / name), load_external_data=False).ir_version == IR_VERSION
    for name in ("model.onnx", "model_int4.onnx"):  # TensorRT's input: every activation zero point is 0
        graph = onnx.load(str(tmp_path / name)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        zeros = [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
        assert len(zeros) == 1 + 4 * depth and not any(zeros), name
        assert sum(n.op_type == "Sub" and n.output[0].rsplit("_", 1)[0].endswith(".shifted")
                   for n in graph.node) == sum(z != 128 for z in quant["act_zero_points"].values()), name
    assert json.loads((tmp_path / "quant.json").read_text())["fingerprint"] == quant["fingerprint"]
    x = images[20:21]
    with torch.no_grad():
        ref_q = copy.deepcopy(q).double().extract(x.double(), facet_layer=-1, facet="value")
        ref_f = model.extract(x, facet_layer=-1, facet="value")
    for graph in ("qdq", "int4", "cpu"):
        out = OnnxEngine(tmp_path, graph).infer_normalized(x.numpy())
        for ours, ref in ((out.patch_tokens, ref_q.patch_tokens), (out.value_facet, ref_q.facet)):
            ref = ref[0].float().numpy()
            assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) <= tolerance, graph
    fp = OnnxEngine(tmp_path, "fp32").infer_normalized(x.numpy())
    assert np.abs(fp.patch_tokens - ref_f.patch_tokens[0].numpy()).max() < 1e-4
    assert np.allclose(fp.cls_token, ref_f.cls_token[0].numpy(), atol=1e-4)


def test_cpu_graph_attention_is_one_kernel_and_agrees_with_qdq(frames, tmp_path):
    """Every graph spells GELU as the one Gelu op; only the cpu graph uses ORT's MultiHeadAttention (the others
    stay standard ONNX for TensorRT), and it computes what the qdq graph computes, register tokens included.
    The fp32 and cpu graphs fold LayerScale into the Linear before it, negative gammas included."""
    rgbs, images = frames
    depth = 2
    model = outlier_model(depth=depth, arch="vits14_reg4")
    with torch.no_grad():
        model.blocks[0].ls1.gamma[::3] *= -1
    q, _ = calibrate(model, images[:8], rgbs[:8], CalibrationConfig(method="minmax"), progress=False)
    write_artifact(tmp_path, q, model, {"method": "minmax", "arch": "vits14_reg4-d2", "trained": False}, SIZE, -1)
    for path in ("fp32.onnx", "model.onnx", "model_int4.onnx", "model_cpu.onnx"):
        nodes = onnx.load(tmp_path / path).graph.node
        ops = Counter(n.op_type for n in nodes)
        assert ops["Gelu"] == depth and "Erf" not in ops, path
        layer_scale_muls = sum(n.op_type == "Mul" and n.output[0].rsplit("_", 1)[0].endswith(".ls") for n in nodes)
        assert layer_scale_muls == (0 if path in ("fp32.onnx", "model_cpu.onnx") else 2 * depth), path
        if path == "model_cpu.onnx":
            assert ops["MultiHeadAttention"] == depth and "Softmax" not in ops
        else:
            assert {n.domain for n in nodes} == {""} and ops["Softmax"] == depth, path
    x = images[20:21].numpy()
    cpu, qdq = (OnnxEngine(tmp_path, graph).infer_normalized(x) for graph in ("cpu", "qdq"))
    for ours, ref in ((cpu.patch_tokens, qdq.patch_tokens), (cpu.value_facet, qdq.value_facet),
                      (cpu.cls_token, qdq.cls_token)):
        assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) <= 1e-3


def test_int4_graph_of_full_vits_is_a_fifth_of_fp32(tmp_path):
    model = outlier_model(depth=12)
    images = torch.randn(8, 3, 56, 56)
    q, _ = calibrate(model, images, [np.zeros((56, 56, 3), np.uint8)] * 8,
                     CalibrationConfig(method="minmax"), progress=False)
    write_artifact(tmp_path, q, model, {"method": "minmax", "arch": "vits14", "trained": False}, (56, 56), -1)
    ratio = (tmp_path / "model_int4.onnx").stat().st_size / (tmp_path / "fp32.onnx").stat().st_size
    assert ratio <= 0.2, ratio


def test_deploy_path_runs_without_torch(frames, tmp_path):
    rgbs, images = frames
    model = outlier_model(depth=2)
    q, _ = calibrate(model, images[:8], rgbs[:8], CalibrationConfig(method="minmax"), progress=False)
    write_artifact(tmp_path, q, model, {"method": "minmax", "arch": "vits14-d2", "trained": False}, SIZE, -1)
    code = (
        "import sys, numpy as np\n"
        "from spatialq_ros.runtime.onnx_engine import OnnxEngine\n"
        f"e = OnnxEngine({str(tmp_path)!r})\n"
        "f = e.infer(np.zeros((100, 150, 3), np.uint8))\n"
        "assert f.patch_tokens.shape == (8, 8, 384), f.patch_tokens.shape\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import cv2\n"
        f"cv2.imwrite({str(tmp_path / 'frame.png')!r}, np.zeros((100, 150, 3), np.uint8))\n"
        "from spatialq_ros.cli import main\n"
        f"assert main(['features', '--image', {str(tmp_path / 'frame.png')!r}, '--model', {str(tmp_path)!r},\n"
        f"             '--out', {str(tmp_path / 'f.npz')!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'spatialq features imported torch'\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
