"""Place descriptors: VLAD (against its math written as loops), soft VLAD, GeM, the k-means vocabulary, PCA."""

from __future__ import annotations


import numpy as np
import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.perception.place.kmeans import fit_vocabulary
from spatialq_ros.perception.place.pca import PCAWhitening
from spatialq_ros.perception.place.vlad import gem, vlad


def loop_vlad(x, centers, intra_norm=True):
    """AnyLoc's hard VLAD the slow way: unit descriptors, the most cosine-similar centre, residual sums to the
    centre as given, per-centre L2 (empty centres stay zero), L2 of the whole."""
    k, d = len(centers), len(centers[0])
    sums = [[0.0] * d for _ in range(k)]
    for row in x:
        norm = sum(v * v for v in row) ** 0.5
        unit = [v / norm for v in row]
        best, best_cos = 0, -2.0
        for j, c in enumerate(centers):
            cos = sum(a * b for a, b in zip(unit, c)) / sum(b * b for b in c) ** 0.5
            if cos > best_cos:
                best, best_cos = j, cos
        for i in range(d):
            sums[best][i] += unit[i] - centers[best][i]
    if intra_norm:
        for j in range(k):
            norm = sum(v * v for v in sums[j]) ** 0.5
            if norm > 0:
                sums[j] = [v / norm for v in sums[j]]
    flat = [v for block in sums for v in block]
    norm = sum(v * v for v in flat) ** 0.5
    return np.array([v / norm for v in flat])


def clustered(rng, n=300, k=8, d=24, empty=1):
    """Patches around k - `empty` of k centres (means of unit vectors are shorter than 1, as in AnyLoc)."""
    directions = rng.normal(size=(k, d))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    centers = directions * rng.uniform(0.6, 0.95, (k, 1))
    labels = rng.integers(empty, k, n)
    x = directions[labels] + rng.normal(0, 0.15, (n, d))
    return x * rng.uniform(0.5, 3, (n, 1)), centers  # unnormalised patches: vlad norms them


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hard_vlad_equals_its_math_written_as_loops(seed):
    rng = np.random.default_rng(seed)
    x, centers = clustered(rng)
    ours = vlad(x, centers)
    assert ours.dtype == np.float32 and ours.shape == (8 * 24,)
    assert np.allclose(ours, loop_vlad(x.tolist(), centers.tolist()), atol=1e-6)
    assert np.all(ours[:24] == 0)  # the empty centre's block
    assert np.allclose(vlad(x, centers, intra_norm=False), loop_vlad(x.tolist(), centers.tolist(), False), atol=1e-6)
    random_centers = rng.normal(size=(5, 24))
    assert np.allclose(vlad(x, random_centers), loop_vlad(x.tolist(), random_centers.tolist()), atol=1e-6)


def test_soft_vlad_tends_to_hard_as_the_temperature_falls():
    rng = np.random.default_rng(3)
    x, centers = clustered(rng, empty=0)
    hard = vlad(x, centers)
    gaps = [np.abs(vlad(x, centers, mode="soft", temperature=t) - hard).max() for t in (1.0, 0.1, 0.01, 1e-4)]
    assert gaps[0] > 0.01 and gaps[-1] < 1e-6
    assert all(a >= b for a, b in zip(gaps, gaps[1:]))
    assert abs(np.linalg.norm(vlad(x, centers, mode="soft", temperature=1.0)) - 1) < 1e-6
    with pytest.raises(ValueError, match="mode"):
        vlad(x, centers, mode="fuzzy")
    with pytest.raises(SpatialqError, match="dimension"):
        vlad(x, centers[:, :10])


def test_gem_is_the_signed_generalised_mean():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 6))
    expected = np.array([np.cbrt(np.mean(x[:, j] ** 3)) for j in range(6)])  # p = 3: a real cube root keeps the sign
    g = gem(x)
    assert g.dtype == np.float32 and np.allclose(g, expected / np.linalg.norm(expected), atol=1e-6)
    assert np.allclose(gem(np.abs(x), p=1), np.abs(x).mean(0) / np.linalg.norm(np.abs(x).mean(0)), atol=1e-6)
    assert np.allclose(gem(-x), -g, atol=1e-7)  # odd: flips with its input
    peaked = np.zeros((100, 2))
    peaked[0, 0] = 10.0
    peaked[:, 1] = 1.0
    assert gem(peaked, p=8)[0] > gem(peaked, p=1)[0]  # larger p moves towards max-pooling


def test_vlad_of_a_1024_patch_384_dim_frame_is_one_unit_vector_of_k_times_d():
    """Its time is the `place` stage of the replay report and /diagnostics, not a bound here."""
    rng = np.random.default_rng(5)
    x, centers = rng.normal(size=(1024, 384)), rng.normal(size=(32, 384))
    v = vlad(x, centers)
    assert v.shape == (32 * 384,) and v.dtype == np.float32 and abs(float(np.linalg.norm(v)) - 1) < 1e-5


def blobs(seed, k=4, d=8, n=100):
    rng = np.random.default_rng(seed)
    directions = np.eye(d)[:k]
    return np.concatenate([c * 5 + rng.normal(0, 0.3, (n, d)) for c in directions]), directions


def test_vocabulary_is_deterministic_per_seed_and_finds_the_clusters():
    x, directions = blobs(0)
    a, b = fit_vocabulary(x, k=4, seed=1), fit_vocabulary(x, k=4, seed=1)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert sorted(np.argmax(a, axis=1).tolist()) == [0, 1, 2, 3]
    # centres are means of unit descriptors (as AnyLoc's): just inside the unit sphere, near each direction
    unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    assert np.all(np.linalg.norm(a, axis=1) < 1) and np.all(np.max(unit @ directions.T, axis=1) > 0.99)
    shuffled = fit_vocabulary(x[np.random.default_rng(2).permutation(len(x))], k=4, seed=7)
    by_direction = np.argsort(np.argmax(a, axis=1)), np.argsort(np.argmax(shuffled, axis=1))
    assert np.allclose(shuffled[by_direction[1]], a[by_direction[0]], atol=1e-5)  # same clusters, any seed or order


def test_vocabulary_subsamples_deterministically_and_refuses_too_few():
    x, _ = blobs(1, n=500)
    once, twice = (fit_vocabulary(x, k=4, seed=3, max_samples=300) for _ in range(2))
    assert np.array_equal(once, twice)
    duplicates = np.repeat(x[:2], 20, axis=0)  # 2 distinct points, 3 clusters asked: no crash, finite centres
    assert np.all(np.isfinite(fit_vocabulary(duplicates, k=3)))
    with pytest.raises(SpatialqError, match="at least 32"):
        fit_vocabulary(x[:10], k=32)


def test_pca_whitening_gives_identity_covariance_and_unit_rows():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 10)) + 3.0  # rank 6 in 10 dims
    pca = PCAWhitening.fit(x, dims=4)
    z = (x - pca.mean) @ pca.components.T
    assert pca.dims == 4 and np.allclose(np.cov(z.T), np.eye(4), atol=1e-4)
    assert np.allclose(np.linalg.norm(pca.transform(x), axis=1), 1, atol=1e-6)
    full = PCAWhitening.fit(x, dims=10)
    assert full.dims == 6  # null directions are never whitened (they would blow noise up)
    assert np.allclose(np.cov(((x - full.mean) @ full.components.T).T), np.eye(6), atol=1e-4)
    with pytest.raises(SpatialqError, match="expects 10-dim"):
        pca.transform(x[:, :5])
    with pytest.raises(SpatialqError, match="no variance"):
        PCAWhitening.fit(np.ones((5, 3)), dims=2)
