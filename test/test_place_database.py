"""The map database (file format, versions, fingerprints, extension), search backends and the recognizer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.perception.place.database import PlaceDatabase
from spatialq_ros.perception.place.kmeans import fit_vocabulary
from spatialq_ros.perception.place.recognizer import PlaceRecognizer, global_descriptor
from spatialq_ros.perception.place.search import PlaceIndex

D, GRID = 16, (4, 5)  # facet dim; (h, w) patches = a 70x56 frame
CONFIG = {"facet_layer": 9, "aggregation": "vlad", "vlad_mode": "hard", "size": [70, 56], "pca_dims": 8,
          "clusters": 6}
WORDS = np.random.default_rng(100).normal(size=(6, D))  # the "visual words" every place is made of


def place_facet(place: int, seed: int) -> np.ndarray:
    """A frame of `place`: patches of the words in that place's own look (a fixed offset per word, which
    VLAD's residuals capture) and mix; a revisit (another seed) draws other patches with other noise."""
    look = np.random.default_rng(place)
    mix, offsets = look.dirichlet(np.full(len(WORDS), 2.0)), look.normal(0, 0.4, WORDS.shape)
    rng = np.random.default_rng(1000 * place + seed)
    words = rng.choice(len(WORDS), GRID[0] * GRID[1], p=mix)
    patches = WORDS[words] + offsets[words] + rng.normal(0, 0.3, (len(words), D))
    return patches.reshape(*GRID, D).astype(np.float32)


def pose(i: int) -> np.ndarray:
    return np.array([10.0 * i, -2.0 * i, 50, 0, 0, np.sin(i / 10), np.cos(i / 10)])


def build(n=20, fingerprint="fp-A", config=CONFIG) -> PlaceDatabase:
    vocabulary = fit_vocabulary(np.concatenate([place_facet(i, 0).reshape(-1, D) for i in range(n)]), k=6)
    db = PlaceDatabase(vocabulary, fingerprint, config)
    recognizer = PlaceRecognizer(db, fingerprint)
    for i in range(n):
        recognizer.add_place(place_facet(i, 0), pose(i), 1_000 + i)
    db.refit_pca()
    return db


def test_revisits_find_their_place_through_vlad_and_pca():
    db = build()
    assert db.pca is not None and db.pca.dims == 8 and db.descriptors.shape == (20, 8)
    recognizer = PlaceRecognizer(db, "fp-A", top_k=3)
    hits = 0
    for i in range(20):
        match = recognizer.match(place_facet(i, seed=1))  # another visit: other patches, other noise
        assert match.indices.shape == (3,) and np.all(np.diff(match.similarities) <= 0)
        assert np.array_equal(match.poses, db.poses[match.indices])
        assert np.array_equal(match.stamps, db.stamps[match.indices])
        hits += match.indices[0] == i
    assert hits >= 18
    same = recognizer.match(place_facet(7, seed=0))  # the very frame the map holds
    assert same.indices[0] == 7 and same.similarities[0] > 0.999 and np.array_equal(same.best_pose, pose(7))


def test_save_load_roundtrip_then_extend(tmp_path):
    db = build()
    path = tmp_path / "map.npz"
    db.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["map.npz"]  # written atomically: no temp file left
    loaded = PlaceDatabase.load(path)
    assert loaded.fingerprint == "fp-A" and loaded.config == CONFIG and len(loaded) == 20 and loaded.name == str(path)
    for name in ("vocabulary", "poses", "stamps", "aggregated", "descriptors"):
        assert np.array_equal(getattr(loaded, name), getattr(db, name)), name
    assert loaded.stamps.dtype == np.int64 and loaded.poses.shape == (20, 7)
    query = global_descriptor(place_facet(3, 1), db.vocabulary)
    for a, b in zip(db.query(query, 5, "fp-A"), loaded.query(query, 5, "fp-A")):
        assert np.array_equal(a, b)
    recognizer = PlaceRecognizer(loaded, "fp-A")
    for i in range(20, 26):  # a later flight extends the map
        recognizer.add_place(place_facet(i, 0), pose(i), 1_000 + i)
    assert recognizer.match(place_facet(24, 0)).indices[0] == 24  # searchable at once, with the old whitening
    loaded.refit_pca()
    loaded.save(path)
    again = PlaceDatabase.load(path)
    assert len(again) == 26 and again.stamps[-1] == 1_025 and np.array_equal(again.poses[25], pose(25))
    assert PlaceRecognizer(again, "fp-A").match(place_facet(24, 0)).indices[0] == 24


def test_batch_queries_and_k_beyond_the_map():
    db = build(n=6)
    queries = np.stack([global_descriptor(place_facet(i, 0), db.vocabulary) for i in range(6)])
    indices, similarities = db.query(queries, 10, "fp-A")
    assert indices.shape == similarities.shape == (6, 6) and np.array_equal(indices[:, 0], np.arange(6))


def test_another_backbone_is_refused_naming_both_fingerprints():
    db = build(n=6)
    with pytest.raises(SpatialqError, match="built with backbone 'fp-A'.*'fp-B'"):
        PlaceRecognizer(db, "fp-B")
    with pytest.raises(SpatialqError, match="'fp-A'.*'fp-B'"):
        db.query(db.aggregated[0], 1, "fp-B")


def test_empty_map_wrong_sizes_and_bad_places_are_user_errors():
    db = build(n=6)
    empty = PlaceDatabase(db.vocabulary, "fp-A", CONFIG)
    with pytest.raises(SpatialqError, match="no places"):
        PlaceRecognizer(empty, "fp-A").match(place_facet(0, 0))
    recognizer = PlaceRecognizer(db, "fp-A")
    with pytest.raises(SpatialqError, match="built from 70x56 frames"):
        recognizer.match(np.zeros((8, 8, D), np.float32))
    with pytest.raises(SpatialqError, match="dimension"):
        recognizer.match(np.zeros((*GRID, D + 1), np.float32))
    with pytest.raises(SpatialqError, match="96 values"):
        db.add(np.ones(10), pose(0), 0)
    with pytest.raises(SpatialqError, match="finite pose"):
        db.add(db.aggregated[0], np.full(7, np.nan), 0)


def test_gem_maps_need_no_vocabulary_and_small_maps_skip_whitening():
    config = dict(CONFIG, aggregation="gem", pca_dims=64)
    db = PlaceDatabase(np.zeros((0, D), np.float32), "fp-A", config)
    recognizer = PlaceRecognizer(db, "fp-A")
    for i in range(6):
        recognizer.add_place(place_facet(i, 0), pose(i), i)
    db.refit_pca()
    assert db.pca is not None and db.pca.dims <= 3  # at most half as many directions as places
    assert db.aggregated.shape == (6, D) and recognizer.match(place_facet(4, 0)).indices[0] == 4
    db.config["pca_dims"] = 0
    db.refit_pca()
    assert db.pca is None and db.descriptors.shape == (6, D)


def rewrite(path, out, **changes):
    with np.load(path) as data:
        arrays = dict(data)
    header = json.loads(str(arrays["header"]))
    for key, value in changes.items():
        if key in header:
            header[key] = value
        elif value is None:
            del arrays[key]
        else:
            arrays[key] = value
    arrays["header"] = np.array(json.dumps(header))
    np.savez(out, **arrays)
    return out


def test_unreadable_files_are_one_line_errors(tmp_path):
    path = tmp_path / "map.npz"
    build(n=6).save(path)
    with pytest.raises(SpatialqError, match="no such map file"):
        PlaceDatabase.load(tmp_path / "none.npz")
    (tmp_path / "garbage.npz").write_bytes(b"garbage")
    with pytest.raises(SpatialqError, match="garbage.npz: not a readable map file"):
        PlaceDatabase.load(tmp_path / "garbage.npz")
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:2000])
    with pytest.raises(SpatialqError, match="cut.npz: not a readable map file"):
        PlaceDatabase.load(tmp_path / "cut.npz")
    with pytest.raises(SpatialqError, match="format version 99, but this spatialq reads version 1"):
        PlaceDatabase.load(rewrite(path, tmp_path / "v99.npz", format_version=99))
    with pytest.raises(SpatialqError, match="not a spatialq map"):
        PlaceDatabase.load(rewrite(path, tmp_path / "other.npz", format="something-else"))
    with pytest.raises(SpatialqError, match="missing aggregated"):
        PlaceDatabase.load(rewrite(path, tmp_path / "missing.npz", aggregated=None))
    with pytest.raises(SpatialqError, match="corrupt map file"):
        PlaceDatabase.load(rewrite(path, tmp_path / "short.npz", stamps=np.arange(3)))
    with pytest.raises(SpatialqError, match="corrupt map file"):
        PlaceDatabase.load(rewrite(path, tmp_path / "pca.npz", pca_mean=np.zeros(5, np.float32)))


def unit_rows(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_faiss_and_numpy_give_the_same_top_k():
    rng = np.random.default_rng(7)
    places = unit_rows(rng, 300, 32)
    queries = places[:10] + rng.normal(0, 0.05, (10, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact, faiss_index = PlaceIndex(places, use_faiss=False), PlaceIndex(places, use_faiss=True)
    assert not exact.uses_faiss and faiss_index.uses_faiss
    for k in (1, 5, 300, 400):
        i_np, s_np = exact.search(queries, k)
        i_fs, s_fs = faiss_index.search(queries, k)
        assert i_np.shape == (10, min(k, 300)) and np.array_equal(i_np, i_fs) and np.allclose(s_np, s_fs, atol=1e-5)
    assert np.array_equal(exact.search(queries, 1)[0][:, 0], np.arange(10))
    brute = np.argsort(-(queries @ places.T), axis=1, kind="stable")[:, :5]
    assert np.array_equal(exact.search(queries, 5)[0], brute)


def test_search_backend_follows_map_size(tmp_path):
    places = unit_rows(np.random.default_rng(8), 50, 8)
    assert not PlaceIndex(places).uses_faiss
    assert PlaceIndex(places, faiss_from=50).uses_faiss and not PlaceIndex(places, faiss_from=51).uses_faiss
    build(n=8).save(tmp_path / "map.npz")
    exact, faiss_db = PlaceDatabase.load(tmp_path / "map.npz"), PlaceDatabase.load(tmp_path / "map.npz", faiss_from=8)
    query = exact.aggregated[2]
    a, b = exact.query(query, 3, "fp-A"), faiss_db.query(query, 3, "fp-A")
    assert a[0][0] == 2 and np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], atol=1e-5)
    assert not exact._search_index().uses_faiss and faiss_db._search_index().uses_faiss


def test_the_heads_never_import_torch():
    """The deploy path (ONNX Runtime / TensorRT engines) must start without torch."""
    code = ("import sys, numpy as np\n"
            "from spatialq_ros.perception import keypoints\n"
            "from spatialq_ros.perception.place import database, kmeans, pca, recognizer, search, vlad\n"
            "from spatialq_ros.metrics import repeatability, vpr\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
