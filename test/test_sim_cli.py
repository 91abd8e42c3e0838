"""`spatialq sim` from the command line: output handling and one-line errors."""

from __future__ import annotations

import os
import sys

import pytest

from spatialq_ros.cli import main
from spatialq_ros.errors import SpatialqError
from spatialq_ros.sim import bag as B
from spatialq_ros.sim import render as render_module
from spatialq_ros.sim.simulate import SimConfig, simulate

SMALL = ["--size", "56x42", "--seed", "3"]


def test_writes_a_bag_refuses_to_overwrite_and_replaces_with_force(tmp_path, capsys):
    out = tmp_path / "flight"
    assert main(["sim", "--out", str(out), "--frames", "2", *SMALL]) == 0
    assert "wrote" in capsys.readouterr().out
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["sim", "--out", str(out), "--frames", "3", *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--force" in err[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(["sim", "--out", str(out), "--frames", "3", *SMALL, "--force"]) == 0
    assert len(list(B.read_frames(out))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flight"]  # no temp folders left beside it


def test_flags_reach_the_bag(tmp_path):
    out = tmp_path / "f"
    assert main(["sim", "--out", str(out), "--frames", "4", *SMALL, "--storage", "sqlite3", "--compressed",
                 "--hover", "2"]) == 0
    assert (out / "f.db3").is_file()
    frames = list(B.read_frames(out, B.COMPRESSED_TOPIC))
    assert len(frames) == 4 and frames[0].rgb.shape == (42, 56, 3)
    xy = [p[:2] for _, p in sorted(B.read_poses(out).items())]
    assert sum(abs(a[0] - b[0]) + abs(a[1] - b[1]) < 0.3 for a, b in zip(xy, xy[1:])) == 2


@pytest.mark.parametrize("args, message", [
    (["--size", "448"], "expected WxH"),
    (["--size", "axb"], "expected WxH"),
    (["--size=-3x4"], "expected WxH"),
    (["--size", "0x448"], "between 1 and"),
    (["--size", "448x0"], "between 1 and"),
    (["--size", "5000x10"], "between 1 and"),
    (["--frames", "0"], "at least 1 frame"),
    (["--frames", "-4"], "at least 1 frame"),
    (["--hover", "5", "--frames", "5"], "--hover"),
    (["--hover", "-1"], "--hover"),
    (["--seed", "-1"], "--seed"),
])
def test_bad_arguments_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    assert main(["sim", "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(tmp_path, capsys):
    assert main(["sim", "--out", str(tmp_path / "no" / "x"), "--frames", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux")
def test_unwritable_output_folder(tmp_path, capsys):
    # /proc refuses new folders even to root, whose permission bits let os.access say yes anyway
    assert main(["sim", "--out", "/proc/spatialq_flight", "--frames", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/proc/spatialq_flight" in err[0]
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["sim", "--out", str(locked / "x"), "--frames", "1"]) == 2
        assert "not writable" in capsys.readouterr().err


def test_a_failure_mid_flight_leaves_no_partial_bag(tmp_path, monkeypatch):
    rendered = []
    real = render_module.render_frame

    def failing(*args, **kwargs):
        if len(rendered) == 2:
            raise SpatialqError("injected failure")
        rendered.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(render_module, "render_frame", failing)
    with pytest.raises(SpatialqError, match="injected"):
        simulate(tmp_path / "flight", SimConfig(frames=5, size=(56, 42), seed=3), progress=False)
    assert len(rendered) == 2 and list(tmp_path.iterdir()) == []
