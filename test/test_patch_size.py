"""A backbone whose patch is 16 px (DINOv3's) through the product: the grid, the keypoint cell, the size
checks, the artifact and its ONNX graphs, the heads and the node all follow the model's patch, not 14.

SIZE is chosen so that a leftover 14 shows: 128x64 is a 4x8 grid on /16, but 4x9 cells (with pixels
left over) on /14, and not a multiple of 14 at all.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from spatialq_ros.backbone.archs import ViTConfig
from spatialq_ros.backbone.checkpoint import load_backbone
from spatialq_ros.backbone.preprocess import preprocess
from spatialq_ros.backbone.synthetic import synthetic_state_dict
from spatialq_ros.cli import main
from spatialq_ros.errors import SpatialqError
from spatialq_ros.perception.keypoints import detect
from spatialq_ros.perception.pipeline import Pipeline
from spatialq_ros.runtime.factory import make_engine
from spatialq_ros.runtime.onnx_engine import OnnxEngine
from spatialq_ros.sim.bag import read_frames
from spatialq_ros.sim.simulate import SimConfig, simulate

SIZE = (128, 64)
GRID = (4, 8)  # (h, w) on /16
TAG = f"{SIZE[0]}x{SIZE[1]}"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("patch16")
    mp.setenv("SPATIALQ_MODELS_DIR", str(folder))  # no real default weights: nothing here may fall back to them
    mp.chdir(folder)
    yield folder
    mp.undo()


@pytest.fixture(scope="module")
def checkpoint(work):
    """A 2-block ViT-S/16 in the official .pth layout, seeded (DINOv2-style learned positions, 8x8 grid)."""
    config = ViTConfig(embed_dim=384, depth=2, num_heads=6, patch_size=16, pos_grid=8)
    path = work / "vits16_d2.pth"
    torch.save({k: torch.from_numpy(v) for k, v in synthetic_state_dict(config, seed=3).items()}, path)
    return path


@pytest.fixture(scope="module")
def flight(work):
    simulate(work / "flight", SimConfig(frames=8, size=SIZE, seed=2), progress=False)
    return work / "flight"


@pytest.fixture(scope="module")
def artifact(work, checkpoint, flight):
    out = work / "w4a8"
    assert main(["calibrate", "--bag", str(flight), "--model", str(checkpoint), "--size", TAG, "--frames", "6",
                 "--holdout", "2", "--method", "minmax", "--out", str(out)]) == 0
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_the_checkpoint_loads_as_a_patch_16_backbone(checkpoint):
    model, _ = load_backbone(checkpoint)
    assert model.patch_size == 16
    with torch.no_grad():
        out = model.extract(torch.from_numpy(preprocess(np.zeros((64, 128, 3), np.uint8))))
    assert out.patch_tokens.shape == (1, *GRID, 384)


def test_features_follow_the_patch_and_size_errors_name_it(work, checkpoint, capsys):
    rgb = np.random.default_rng(0).integers(0, 255, (70, 130, 3), dtype=np.uint8)
    image = work / "frame.png"
    cv2.imwrite(str(image), rgb[..., ::-1])
    assert main(["features", "--image", str(image), "--model", str(checkpoint), "--out", str(work / "f.npz")]) == 0
    data = np.load(work / "f.npz")
    assert json.loads(str(data["meta"]))["size"] == list(SIZE)  # 130x70 rounds to multiples of 16, not of 14
    model, _ = load_backbone(checkpoint)
    with torch.no_grad():
        ref = model.extract(torch.from_numpy(preprocess(rgb, SIZE))).patch_tokens[0].numpy()
    assert data["patch_tokens"].shape == (*GRID, 384)
    assert np.allclose(data["patch_tokens"], ref, atol=1e-5)
    capsys.readouterr()
    assert main(["features", "--image", str(image), "--model", str(checkpoint), "--size", "126x98",
                 "--out", str(work / "g.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "spatialq features: error: size 126x98: sides must be multiples of 16, the patch of " \
                      + load_backbone(checkpoint)[1].arch
    assert not (work / "g.npz").exists()


def test_the_torch_engine_checks_sizes_against_its_patch(checkpoint):
    engine = make_engine(str(checkpoint), SIZE)
    assert engine.patch_size == 16
    assert engine.infer(np.zeros((30, 50, 3), np.uint8)).patch_tokens.shape == (*GRID, 384)
    with pytest.raises(SpatialqError, match="size 126x98: sides must be multiples of 16"):
        make_engine(str(checkpoint), (126, 98))


def test_the_artifact_records_the_patch_and_its_graphs_give_the_16_px_grid(artifact, checkpoint, flight):
    meta = json.loads((artifact / "quant.json").read_text())
    assert meta["patch_size"] == 16 and meta["size"] == list(SIZE)
    rgb = next(iter(read_frames(flight))).rgb
    model, _ = load_backbone(checkpoint)
    with torch.no_grad():
        ref = model.extract(torch.from_numpy(preprocess(rgb, SIZE))).patch_tokens[0].numpy()
    tokens = {}
    for graph in ("fp32", "qdq", "int4", "cpu"):
        engine = OnnxEngine(artifact, graph)
        assert engine.patch_size == 16 and engine.grid == GRID
        tokens[graph] = engine.infer(rgb).patch_tokens
        assert tokens[graph].shape == (*GRID, 384)
    assert cosines(tokens["fp32"], ref).min() > 0.9999  # the float graph: the torch model in another runtime
    for graph in ("int4", "cpu"):  # one W4A8 model in three forms, token for token
        assert cosines(tokens[graph], tokens["qdq"]).min() > 0.99, graph
    assert cosines(tokens["qdq"], ref).mean() > 0.8  # min-max W4A8 of a model with outlier tokens, but on the grid
    assert make_engine(str(artifact), SIZE).patch_size == 16
    with pytest.raises(SpatialqError, match=f"exported for {TAG}, not 126x98"):
        make_engine(str(artifact), (126, 98))
    report = json.loads((artifact / "report.json").read_text())
    assert {"keypoints", "field", "place"} <= set(report["heads"]["minmax W4A8"])  # the heads ran on /16 too


def test_keypoints_one_per_16_px_cell_and_the_whole_pipeline_on_the_artifact(work, artifact, flight):
    assert main(["build-map", "--bag", str(flight), "--model", str(artifact), "--size", TAG,
                 "--out", str(work / "map.npz")]) == 0
    assert main(["train-field-head", "--bag", str(flight), "--model", str(artifact), "--size", TAG,
                 "--out", str(work / "head.npz")]) == 0
    from spatialq_ros.perception.field import load_head
    from spatialq_ros.perception.place.database import PlaceDatabase
    from spatialq_ros.perception.place.recognizer import PlaceRecognizer

    engine = OnnxEngine(artifact)
    database = PlaceDatabase.load(work / "map.npz")
    assert database.config["patch_size"] == 16
    pipeline = Pipeline(engine, place=PlaceRecognizer(database, engine.fingerprint),
                        field_head=load_head(work / "head.npz"))
    frame = next(iter(read_frames(flight))).rgb
    result = pipeline.process(frame)
    kp = result.keypoints
    assert 0 < len(kp) <= GRID[0] * GRID[1]
    assert len(set(zip(kp.row.tolist(), kp.col.tolist()))) == len(kp)  # at most one per cell
    assert np.array_equal(kp.u // 16, kp.col) and np.array_equal(kp.v // 16, kp.row)  # inside its 16x16 cell
    assert kp.row.max() < GRID[0] and kp.col.max() < GRID[1]
    assert result.field_mask.shape == (SIZE[1], SIZE[0]) and result.place.indices[0] >= 0
    with pytest.raises(SpatialqError, match=r"128x64 frames \(8x4 patches of 16 px\), this facet has 9x4"):
        pipeline.place.describe(np.zeros((4, 9, 384), np.float32))


def test_a_16_px_frame_cut_differently_is_not_a_14_px_one():
    """The cell comes from the frame and the grid: 128x64 over a 4x8 grid is 16 px; over 4x9 it does not tile."""
    rng = np.random.default_rng(1)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (64, 128), dtype=np.uint8), (0, 0), 1.5)
    kp = detect(frame, rng.normal(size=(*GRID, 8)).astype(np.float32))
    assert np.array_equal(kp.u // 16, kp.col) and np.array_equal(kp.v // 16, kp.row)
    close = np.hypot(*(kp.uv[:, None] - kp.uv[None]).transpose(2, 0, 1))[np.triu_indices(len(kp), 1)]
    assert close.min() > 8  # NMS by default: half a 16 px cell
    with pytest.raises(SpatialqError, match="do not match"):
        detect(frame, np.zeros((4, 9, 8), np.float32))


def test_calibration_weights_corners_per_16_px_cell_and_gplq_runs(checkpoint, flight):
    from spatialq_ros.quant.gplq import CalibrationConfig, calibrate
    from spatialq_ros.quant.spatial_weights import corner_map

    rgb = np.full((64, 128, 3), 40, np.uint8)
    rgb[36:, 116:] = 220  # one bright corner at pixel (116, 36): cell (2, 7) on /16, (2, 8) on /14
    corners = corner_map(rgb, GRID, 16)
    assert corners.shape == GRID and np.unravel_index(corners.argmax(), GRID) == (2, 7)
    model, _ = load_backbone(checkpoint)
    rgbs = [f.rgb for f in read_frames(flight)][:2]
    images = torch.from_numpy(np.concatenate([preprocess(r) for r in rgbs]))
    config = CalibrationConfig(alpha=0.5, float_search=False, error_feedback=False, mimic_blocks=(-1,))
    qmodel, log = calibrate(model, images, rgbs, config, progress=False)
    assert log.losses and all(np.isfinite(log.losses))
    with torch.no_grad():
        assert qmodel.extract(images[:1]).patch_tokens.shape == (1, *GRID, 384)


def test_the_bench_grid_follows_the_patch(work, artifact, checkpoint, flight):
    from spatialq_ros.bench.harness import measure, ort_runner

    model, _ = load_backbone(checkpoint)
    images = [preprocess(f.rgb) for f in read_frames(flight)][:2]

    def torch_fp32(x):
        with torch.no_grad():
            return model.extract(torch.from_numpy(x)).patch_tokens[0].reshape(-1, 384).numpy()

    engines = {"torch-fp32": (torch_fp32, None), "ort-fp32": (ort_runner(artifact / "fp32.onnx", 1), None)}
    rows = measure(engines, images, SIZE, model.config, {}, 1.0, 1)
    by = {r.engine: r for r in rows}
    assert by["ort-fp32"].cosine > 0.9999 and by["ort-fp32"].erqa > 0.9 and by["torch-fp32"].size == TAG


def test_bench_and_calibrate_refuse_sizes_off_the_patch(work, checkpoint, flight, capsys):
    for argv in (["bench", "--model", str(checkpoint), "--sizes", f"{TAG},126x98", "--out", str(work / "b")],
                 ["calibrate", "--bag", str(flight), "--model", str(checkpoint), "--size", "126x98",
                  "--frames", "6", "--holdout", "2", "--out", str(work / "never")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "size 126x98: sides must be multiples of 16, the patch of" in err, err
    assert not (work / "never").exists() and not (work / "b").exists()
