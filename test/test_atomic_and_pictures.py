"""Atomic writes, image reading and the feature PCA picture."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from process_helpers import error_lines, run_spatialq
from spatialq_ros.atomic import atomic_dir, save_npz_atomic, write_atomic
from spatialq_ros.errors import SpatialqError
from spatialq_ros.imageio import read_rgb
from spatialq_ros.metrics.erqa import erqa
from spatialq_ros.viz.feature_pca import PcaProjection, pca_basis, pca_rgb
from spatialq_ros.viz.pictures import side_by_side, stamp_untrained, upscale_nearest


def test_write_atomic_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    write_atomic(target, b"old")
    write_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_write_atomic_gives_outputs_the_usual_permissions(tmp_path):
    import os
    import stat

    write_atomic(tmp_path / "report.md", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o666 & ~mask


def test_write_atomic_to_missing_folder_is_one_line_error(tmp_path):
    with pytest.raises(SpatialqError, match="does not exist"):
        write_atomic(tmp_path / "nope" / "x.bin", b"x")


def test_atomic_dir_failure_keeps_previous_output(tmp_path):
    target = tmp_path / "artifact"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, force=True) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash mid-write")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["artifact"]


def test_atomic_dir_refuses_existing_without_force(tmp_path):
    (tmp_path / "artifact").mkdir()
    with pytest.raises(SpatialqError, match="already exists"):
        with atomic_dir(tmp_path / "artifact"):
            pass


def test_atomic_dir_force_replaces(tmp_path):
    target = tmp_path / "artifact"
    for text in ("first", "second"):
        with atomic_dir(target, force=True) as tmp:
            (tmp / "a.txt").write_text(text)
    assert (target / "a.txt").read_text() == "second"
    assert sorted(os.listdir(tmp_path)) == ["artifact"]


def test_save_npz_atomic_roundtrip(tmp_path):
    save_npz_atomic(tmp_path / "f.npz", a=np.arange(3))
    assert np.load(tmp_path / "f.npz")["a"].tolist() == [0, 1, 2]


def test_read_rgb_converts_grey_alpha_and_bgr(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert np.array_equal(read_rgb(tmp_path / "c.png"), rgb)
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 6), 7, np.uint8))
    assert read_rgb(tmp_path / "g.png").shape == (5, 6, 3)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((5, 6, 4), np.uint8))
    assert read_rgb(tmp_path / "a.png").shape == (5, 6, 3)


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_read_rgb_rejects_garbage(tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(SpatialqError, match="bad.png"):
        read_rgb(bad)


def test_read_rgb_missing_file(tmp_path):
    with pytest.raises(SpatialqError, match="no such image"):
        read_rgb(tmp_path / "missing.jpg")


def test_pca_picture_separates_two_token_populations():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(8, 8, 32)).astype(np.float32) * 0.1
    tokens[:, :4, 0] += 5.0  # left half differs along one direction
    picture = pca_rgb(tokens)
    assert picture.shape == (8, 8, 3) and picture.dtype == np.uint8
    left, right = picture[:, :4, 0].astype(int).mean(), picture[:, 4:, 0].astype(int).mean()
    assert abs(left - right) > 150
    basis = pca_basis(tokens)
    assert np.allclose(basis @ basis.T, np.eye(3), atol=1e-8)


def _field_tokens() -> np.ndarray:
    """Three real components, strong to weak: left/right (channel 0), top/bottom (channel 1), and four faint
    blobs, one per quadrant (channel 2, the low-variance one), over very little noise."""
    tokens = np.random.default_rng(0).normal(size=(16, 16, 32)) * 0.001
    tokens[:, :8, 0] += 5.0
    tokens[:8, :, 1] += 2.0
    tokens[2:6, 2:6, 2] += 0.5
    tokens[10:14, 10:14, 2] += 0.5
    tokens[2:6, 10:14, 2] -= 0.5
    tokens[10:14, 2:6, 2] -= 0.5
    return tokens.astype(np.float32)


def test_single_picture_projection_renders_as_a_self_fitted_picture():
    tokens = _field_tokens()
    flat = tokens.reshape(-1, 32).astype(np.float64)
    components = (flat - flat.mean(axis=0)) @ pca_basis(tokens).T
    lo, hi = np.percentile(components, 1, axis=0), np.percentile(components, 99, axis=0)
    expected = (np.clip((components - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8).reshape(16, 16, 3)
    assert np.array_equal(pca_rgb(tokens), expected)
    assert np.array_equal(pca_rgb(tokens, PcaProjection.fit(tokens)), expected)


def test_shared_projection_renders_slightly_noisy_tokens_nearly_alike():
    tokens = _field_tokens()
    noisy = tokens + np.random.default_rng(1).normal(size=tokens.shape).astype(np.float32) * 0.005
    projection = PcaProjection.fit(tokens)
    difference = np.abs(pca_rgb(noisy, projection).astype(int) - pca_rgb(tokens, projection).astype(int))
    assert difference.max() <= 8 and difference.mean() < 2


def test_shared_projection_does_not_stretch_a_flattened_component_to_full_range():
    # The quantized tokens keep a third of the faint blobs (as clipped activations flatten them) plus noise.
    # Their own projection stretches that component to 0..255 again, noise included: spurious edges that
    # ERQA counts against the model. The reference's projection keeps it as faint as it is.
    tokens = _field_tokens()
    quantized = tokens.copy()
    quantized[..., 2] = tokens[..., 2] * 0.3 + np.random.default_rng(1).normal(size=(16, 16)) * 0.02
    projection = PcaProjection.fit(tokens)
    reference, shared, own = pca_rgb(tokens, projection), pca_rgb(quantized, projection), pca_rgb(quantized)
    assert np.ptp(own[..., 2]) == 255
    assert np.ptp(shared[..., 2]) < 128
    assert np.abs(shared[..., :2].astype(int) - reference[..., :2]).max() <= 2
    size = (112, 112)
    score_shared = erqa(upscale_nearest(shared, size), upscale_nearest(reference, size))
    score_own = erqa(upscale_nearest(own, size), upscale_nearest(reference, size))
    assert score_shared > 0.95 and score_shared > score_own + 0.1


def test_projection_fitted_on_several_frames_keeps_their_contrast_comparable():
    # A second frame with half the feature contrast: on its own it would span the full range like the
    # first; under one projection fitted on both, it spans about half.
    first = _field_tokens()
    second = first * 0.5
    projection = PcaProjection.fit(np.stack([first, second]))
    assert projection.mean.shape == (32,) and projection.basis.shape == (3, 32) and projection.lo.shape == (3,)
    assert np.ptp(pca_rgb(second)[..., 0]) == 255
    assert np.ptp(pca_rgb(second, projection)[..., 0]) < 0.75 * np.ptp(pca_rgb(first, projection)[..., 0])


def test_untrained_stamp_marks_picture_red():
    picture = side_by_side(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 32), np.uint8))
    assert picture.shape == (64, 100, 3)
    stamped = stamp_untrained(picture)
    assert (stamped[:4, :, 0] == 200).mean() > 0.5 and not stamped[-10:, :64].any()


def _killed_while_writing(out, code: str) -> None:
    """Run `code` (with `out`, `os`, `signal` and the atomic writers at hand) in a child that SIGKILLs itself
    where the code says: a writer that could not clean up."""
    prelude = ("import os, signal, sys\nfrom pathlib import Path\n"
               "from spatialq_ros.atomic import atomic_dir, write_atomic\nout = Path(sys.argv[1])\n")
    run = subprocess.run([sys.executable, "-c", prelude + code, str(out)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]


KILL = "os.kill(os.getpid(), signal.SIGKILL)"


def _leftovers(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def test_a_killed_writers_temp_folder_is_removed_by_the_next_write_to_that_output(tmp_path):
    out = tmp_path / "art"
    _killed_while_writing(out, f"with atomic_dir(out) as tmp:\n    (tmp / 'half').write_text('x')\n    {KILL}\n")
    assert len(_leftovers(tmp_path, "art")) == 1 and not out.exists()
    with atomic_dir(out) as tmp:
        (tmp / "whole").write_text("y")
    assert _leftovers(tmp_path, "art") == [] and [p.name for p in out.iterdir()] == ["whole"]


def test_a_killed_writers_temp_file_is_removed_and_the_old_file_kept(tmp_path):
    out = tmp_path / "map.npz"
    out.write_bytes(b"old")
    _killed_while_writing(out, f"os.replace = lambda *a: {KILL}\nwrite_atomic(out, b'new')\n")
    (tmp_path / ".map.npz.x1y2z3w4.tmp").write_bytes(b"")  # as named before temp names carried a process id
    assert len(_leftovers(tmp_path, "map.npz")) == 2 and out.read_bytes() == b"old"
    write_atomic(out, b"newer")
    assert _leftovers(tmp_path, "map.npz") == [] and out.read_bytes() == b"newer"


def test_killed_between_moving_the_old_output_aside_and_the_new_one_in_the_old_one_comes_back(tmp_path):
    out = tmp_path / "art"
    out.mkdir()
    (out / "old").write_text("kept")
    _killed_while_writing(out, "real = os.replace\ncalls = []\n"
                          f"def replace(a, b):\n    calls.append(a)\n    if len(calls) == 2:\n        {KILL}\n"
                          "    real(a, b)\nos.replace = replace\n"
                          "with atomic_dir(out, force=True) as tmp:\n    (tmp / 'new').write_text('x')\n")
    assert not out.exists()  # the old output sits in the killed writer's .old folder
    with pytest.raises(SpatialqError, match="already exists"):
        with atomic_dir(out):
            pass
    assert (out / "old").read_text() == "kept" and _leftovers(tmp_path, "art") == []


def test_a_live_writers_temp_is_left_alone(tmp_path):
    out = tmp_path / "art"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f".art.{live.pid}.abcd1234.tmp"
        busy.mkdir()
        with atomic_dir(out) as tmp:
            (tmp / "x").write_text("y")
        assert busy.is_dir()
    finally:
        live.kill()
        live.wait()


def test_a_full_disk_is_one_line_and_keeps_what_was_written_before(tmp_path):
    out = tmp_path / "features.npz"
    write_atomic(out, b"earlier")
    rgb = np.zeros((28, 28, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "frame.png"), rgb)
    run = run_spatialq(["features", "--image", str(tmp_path / "frame.png"), "--size", "28x28", "--out", str(out)],
                       file_size_limit=4096)
    errors = error_lines(run)
    assert run.returncode == 2 and len(errors) == 1, run.stderr[-2000:]
    assert errors[0].endswith("features.npz: not written: file too large; what was there before is kept")
    assert out.read_bytes() == b"earlier" and _leftovers(tmp_path, "features.npz") == []
