"""The engine cache (a TensorRT plan is built once per graph, TensorRT version and GPU) and engine choice."""

from __future__ import annotations

import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.runtime.engine_cache import EngineCache, cache_key
from spatialq_ros.runtime.factory import make_engine


def test_key_covers_graph_bytes_runtime_version_device_and_options(tmp_path):
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"graph-1")
    key = cache_key(graph, "10.3.0", "Orin")
    assert key == cache_key(graph, "10.3.0", "Orin")
    assert len({key, cache_key(graph, "10.4.0", "Orin"), cache_key(graph, "10.3.0", "H100"),
                cache_key(graph, "10.3.0", "Orin", "fp16=False")}) == 4
    graph.write_bytes(b"graph-2")
    assert cache_key(graph, "10.3.0", "Orin") != key
    with pytest.raises(SpatialqError, match="cannot read the graph"):
        cache_key(tmp_path / "missing.onnx", "10.3.0", "Orin")


def test_a_plan_is_built_once_and_reused_by_the_next_start(tmp_path):
    builds = []

    def build():
        builds.append(1)
        return b"plan bytes"

    first = EngineCache(tmp_path / "engines")
    assert first.get_or_build("k" * 64, build) == b"plan bytes" and first.built == 1
    second = EngineCache(tmp_path / "engines")  # a restart
    assert second.get_or_build("k" * 64, build) == b"plan bytes" and second.built == 0
    assert len(builds) == 1
    assert [p.name for p in (tmp_path / "engines").iterdir()] == ["k" * 32 + ".plan"]  # no temp files


def test_a_failed_build_stores_nothing(tmp_path):
    def broken():
        raise SpatialqError("parser said no")

    cache = EngineCache(tmp_path)
    with pytest.raises(SpatialqError, match="parser said no"):
        cache.get_or_build("a" * 64, broken)
    with pytest.raises(SpatialqError, match="produced nothing"):
        cache.get_or_build("a" * 64, lambda: b"")
    assert not list(tmp_path.iterdir())


def test_tensorrt_backend_errors_clearly_where_it_cannot_run(tmp_path):
    with pytest.raises(SpatialqError, match="backend must be one of"):
        make_engine(None, (56, 56), backend="openvino")
    with pytest.raises(SpatialqError, match="runs a W4A8 artifact"):
        make_engine(None, (56, 56), backend="tensorrt")
    (tmp_path / "quant.json").write_text("{}")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(SpatialqError, match="TensorRT is not installed"):
            make_engine(str(tmp_path), (56, 56), backend="tensorrt")
    else:
        pytest.skip("tensorrt is installed: the GPU path is exercised by test_tensorrt_engine_matches_onnx_runtime")


def test_tensorrt_engine_matches_onnx_runtime(tmp_path):
    """GPU machines only: the INT8 plan built from model.onnx tracks ONNX Runtime, and a restart reuses it."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (a Jetson / NVIDIA GPU check)")
    import numpy as np
    import torch

    from spatialq_ros.backbone.archs import ARCHS, ViTConfig
    from spatialq_ros.backbone.checkpoint import to_torch_state
    from spatialq_ros.backbone.synthetic import synthetic_state_dict
    from spatialq_ros.backbone.vit import DinoVisionTransformer
    from spatialq_ros.quant.artifact import write_artifact
    from spatialq_ros.quant.gplq import CalibrationConfig, calibrate
    from spatialq_ros.runtime.onnx_engine import OnnxEngine
    from spatialq_ros.runtime.tensorrt_engine import TensorrtEngine

    config = ViTConfig(**{**ARCHS["vits14"].__dict__, "depth": 2})
    model = DinoVisionTransformer(config)
    model.load_state_dict(to_torch_state(synthetic_state_dict(config, seed=0, outliers=True)))
    images = torch.randn(9, 3, 112, 112)
    rgbs = [np.zeros((112, 112, 3), np.uint8)] * 8
    q, _ = calibrate(model.eval(), images[:8], rgbs, CalibrationConfig(method="minmax"), progress=False)
    write_artifact(tmp_path / "a", q, model, {"method": "minmax", "arch": "vits14-d2", "trained": False}, (112, 112), -1)
    cache = EngineCache(tmp_path / "engines")
    trt_out = TensorrtEngine(tmp_path / "a", cache).infer_normalized(images[8:].numpy())
    ort_out = OnnxEngine(tmp_path / "a", "qdq").infer_normalized(images[8:].numpy())
    a, b = trt_out.patch_tokens.ravel(), ort_out.patch_tokens.ravel()
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.99 and cache.built == 1
    restart = EngineCache(tmp_path / "engines")
    TensorrtEngine(tmp_path / "a", restart)
    assert restart.built == 0
