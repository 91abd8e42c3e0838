"""Place recognition: AnyLoc's VLAD, GeM, the vocabulary, PCA-whitening, the map file and search."""

from __future__ import annotations

import numpy as np
import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.metrics.vpr import recall_at_k
from spatialq_ros.perception.place.database import PlaceDatabase
from spatialq_ros.perception.place.kmeans import fit_vocabulary
from spatialq_ros.perception.place.pca import PCAWhitening
from spatialq_ros.perception.place.recognizer import PlaceRecognizer, global_descriptor
from spatialq_ros.perception.place.search import PlaceIndex
from spatialq_ros.perception.place.vlad import gem, vlad

RNG = np.random.default_rng(0)


def loop_vlad(x, c):
    """The documented math, written the slow way: hard cosine assignment, residual sums, intra-norm, L2."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    out = np.zeros_like(c)
    for xi in x:
        k = int(np.argmax([xi @ ck for ck in c]))
        out[k] += xi - c[k]
    for k in range(len(c)):
        n = np.linalg.norm(out[k])
        if n > 0:
            out[k] /= n
    flat = out.reshape(-1)
    return flat / np.linalg.norm(flat)


def test_hard_vlad_equals_the_reference_math():
    x, c = RNG.normal(size=(300, 24)), RNG.normal(size=(8, 24))
    assert np.allclose(vlad(x, c), loop_vlad(x, c), atol=1e-6)


def test_soft_vlad_tends_to_hard_and_gem_is_unit():
    x, c = RNG.normal(size=(200, 16)), RNG.normal(size=(6, 16))
    assert np.allclose(vlad(x, c, mode="soft", temperature=1e-4), vlad(x, c), atol=1e-5)
    assert not np.allclose(vlad(x, c, mode="soft", temperature=1.0), vlad(x, c), atol=1e-2)
    g = gem(x)
    assert g.shape == (16,) and abs(np.linalg.norm(g) - 1) < 1e-6
    assert np.allclose(gem(np.abs(x), p=1), np.abs(x).mean(0) / np.linalg.norm(np.abs(x).mean(0)), atol=1e-6)


def test_vocabulary_is_deterministic_and_finds_clusters():
    centres = np.eye(8)[:4] * 5
    x = np.concatenate([c + RNG.normal(0, 0.3, (100, 8)) for c in centres])
    a, b = fit_vocabulary(x, k=4, seed=1), fit_vocabulary(x, k=4, seed=1)
    assert np.array_equal(a, b)
    assert sorted(np.argmax(a, axis=1).tolist()) == [0, 1, 2, 3]
    with pytest.raises(SpatialqError, match="at least 32"):
        fit_vocabulary(x[:10], k=32)


def test_pca_whitening_decorrelates():
    x = RNG.normal(size=(500, 6)) @ RNG.normal(size=(6, 6))
    pca = PCAWhitening.fit(x, dims=6)
    z = (x - pca.mean) @ pca.components.T
    assert np.allclose(np.cov(z.T), np.eye(6), atol=1e-6)
    assert np.allclose(np.linalg.norm(pca.transform(x), axis=1), 1, atol=1e-6)


def test_faiss_and_numpy_give_the_same_top_k():
    db = RNG.normal(size=(300, 32)).astype(np.float32)
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q = db[:10] + RNG.normal(0, 0.05, (10, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    i_np, s_np = PlaceIndex(db, use_faiss=False).search(q, 5)
    i_fs, s_fs = PlaceIndex(db, use_faiss=True).search(q, 5)
    assert np.array_equal(i_np, i_fs) and np.allclose(s_np, s_fs, atol=1e-5)
    assert np.array_equal(i_np[:, 0], np.arange(10))


def make_db(n=12, k=4, d=16, pca_dims=8):
    vocab = RNG.normal(size=(k, d)).astype(np.float32)
    db = PlaceDatabase(vocab, "fp-A", {"pca_dims": pca_dims, "facet_layer": -1})
    facets = [RNG.normal(size=(3, 4, d)).astype(np.float32) for _ in range(n)]
    for i, f in enumerate(facets):
        db.add(global_descriptor(f, vocab), np.array([i * 10.0, 0, 50, 0, 0, 0, 1]), 1000 + i)
    db.refit_pca()
    return db, facets


def test_database_roundtrip_extend_and_query(tmp_path):
    db, facets = make_db()
    db.save(tmp_path / "map.npz")
    loaded = PlaceDatabase.load(tmp_path / "map.npz")
    assert len(loaded) == 12 and loaded.fingerprint == "fp-A" and loaded.config["pca_dims"] == 8
    match = PlaceRecognizer(loaded, "fp-A", top_k=3).match(facets[7])
    assert match.indices[0] == 7 and match.stamps[0] == 1007 and match.best_pose[0] == 70.0
    assert match.similarities[0] >= match.similarities[1]
    loaded.add(global_descriptor(facets[0], loaded.vocabulary), np.zeros(7), 5)
    loaded.refit_pca()
    loaded.save(tmp_path / "map.npz")
    assert len(PlaceDatabase.load(tmp_path / "map.npz")) == 13


def test_database_errors(tmp_path):
    db, facets = make_db()
    with pytest.raises(SpatialqError, match="queried with"):
        PlaceRecognizer(db, "fp-B").match(facets[0])
    empty = PlaceDatabase(db.vocabulary, "fp-A", {})
    with pytest.raises(SpatialqError, match="no places"):
        PlaceRecognizer(empty, "fp-A").match(facets[0])
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(SpatialqError, match="not a readable map"):
        PlaceDatabase.load(tmp_path / "bad.npz")
    with pytest.raises(SpatialqError, match="no such map"):
        PlaceDatabase.load(tmp_path / "none.npz")
    db.save(tmp_path / "m.npz")
    data = dict(np.load(tmp_path / "m.npz"))
    data["header"] = np.array(str(data["header"]).replace('"format_version": 1', '"format_version": 99'))
    np.savez(tmp_path / "v99.npz", **data)
    with pytest.raises(SpatialqError, match="version 99"):
        PlaceDatabase.load(tmp_path / "v99.npz")


def test_recall_at_k():
    db = np.array([[0, 0], [100, 0], [200, 0]], float)
    q = np.array([[5, 0], [195, 0], [1000, 0]], float)
    retrieved = np.array([[0, 1], [1, 2], [0, 1]])
    r = recall_at_k(q, db, retrieved, ks=(1, 2), threshold_m=25)
    assert r == {1: 0.5, 2: 1.0}  # the third query has no true neighbour and is skipped
