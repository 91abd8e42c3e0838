"""`spatialq build-map` on a simulated flight, queried with a revisit; and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from process_helpers import error_lines, run_spatialq
from spatialq_ros.cli import main
from spatialq_ros.perception.place.database import PlaceDatabase
from spatialq_ros.perception.place.recognizer import PlaceRecognizer
from spatialq_ros.runtime.factory import make_engine
from spatialq_ros.sim.bag import read_frames, read_poses
from spatialq_ros.sim.simulate import SimConfig, simulate


@pytest.fixture(scope="module")
def flight(tmp_path_factory):
    out = tmp_path_factory.mktemp("map") / "flight"
    simulate(out, SimConfig(frames=30, size=(56, 56), seed=4), progress=False)
    return out


@pytest.fixture(autouse=True)
def untrained(monkeypatch, tmp_path):
    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))


def test_build_map_and_query_a_known_frame(flight, tmp_path, capsys):
    out = tmp_path / "map.npz"
    assert main(["build-map", "--bag", str(flight), "--size", "56x56", "--out", str(out), "--every", "2",
                 "--clusters", "8", "--pca-dims", "8"]) == 0
    assert "UNTRAINED" in capsys.readouterr().out
    db = PlaceDatabase.load(out)
    assert len(db) == 15 and db.vocabulary.shape == (8, 384) and db.pca is not None
    poses = read_poses(flight)
    assert np.allclose(db.poses[3], poses[int(db.stamps[3])])
    engine = make_engine(None, (56, 56))
    frame = [f for f in read_frames(flight) if f.stamp_ns == db.stamps[3]][0]
    match = PlaceRecognizer(db, engine.fingerprint).match(engine.infer(frame.rgb).value_facet)
    assert match.indices[0] == 3 and match.similarities[0] > 0.99


def test_min_distance_spacing(flight, tmp_path):
    out = tmp_path / "map.npz"
    assert main(["build-map", "--bag", str(flight), "--size", "56x56", "--out", str(out), "--min-distance", "30",
                 "--clusters", "4", "--pca-dims", "0"]) == 0
    db = PlaceDatabase.load(out)
    steps = np.linalg.norm(np.diff(db.poses[:, :2], axis=0), axis=1)
    assert len(db) >= 2 and steps.min() >= 30 and db.pca is None


def test_errors(flight, tmp_path, capsys):
    assert main(["build-map", "--bag", str(flight), "--size", "56x56", "--out", str(tmp_path / "m.npz"),
                 "--pose-topic", "/gps"]) == 2
    assert "topic /gps not in bag" in capsys.readouterr().err
    assert main(["build-map", "--bag", str(flight), "--size", "56x56", "--out", str(tmp_path / "m.npz"),
                 "--frames", "1"]) == 2
    assert "a map needs at least 2" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_a_full_disk_while_saving_keeps_the_map_saved_before(flight, tmp_path):
    out = tmp_path / "map.npz"
    args = ["build-map", "--bag", str(flight), "--size", "56x56", "--out", str(out), "--clusters", "4"]
    assert main(args) == 0
    before = out.read_bytes()
    run = run_spatialq([*args, "--every", "2"], file_size_limit=len(before) // 2)
    errors = error_lines(run)
    assert run.returncode == 2 and len(errors) == 1, run.stderr[-2000:]
    assert errors[0] == (f"spatialq build-map: error: {out}: not written: file too large; what was there before "
                         "is kept")
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["map.npz"]
