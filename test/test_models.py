"""`spatialq models` against a real HTTP server on 127.0.0.1 with a test manifest."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spatialq_ros.cli import main
from spatialq_ros.zoo.manifest import DEFAULT_MANIFEST, load_manifest

PAYLOAD = b"fake checkpoint bytes " * 5000


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "tiny.pth").write_bytes(PAYLOAD)
    (root / "other.pth").write_bytes(b"something else")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def manifest(tmp_path, server, monkeypatch):
    def write(url_path="tiny.pth", sha=hashlib.sha256(PAYLOAD).hexdigest(), size=len(PAYLOAD)):
        data = {"format_version": 1, "models": {"tiny": {
            "file": "tiny_pretrain.pth", "url": f"{server}/{url_path}", "arch": "vits14", "registers": 0,
            "size": size, "sha256": sha}}}
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps(data))
        monkeypatch.setenv("SPATIALQ_MODELS_MANIFEST", str(path))
    write()
    return write


@pytest.fixture
def models_dir(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    return d


def run(capsys, *args):
    code = main(["models", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fetch_verifies_and_renames(capsys, manifest, models_dir):
    code, out, _ = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 0 and "sha256 verified" in out
    assert (models_dir / "tiny_pretrain.pth").read_bytes() == PAYLOAD
    assert [p.name for p in models_dir.iterdir()] == ["tiny_pretrain.pth"]
    code, out, _ = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 0 and "already present and verified" in out
    code, out, _ = run(capsys, "list", "--dir", str(models_dir))
    assert "tiny" in out and "verified" in out


def test_hash_mismatch_keeps_the_good_file_and_leaves_no_temp(capsys, manifest, models_dir):
    (models_dir / "tiny_pretrain.pth").write_bytes(b"earlier file")
    manifest(sha="0" * 64)
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    last = err.strip().splitlines()[-1]
    assert code == 2 and "does not match" in last and last.startswith("spatialq models: error:")
    assert (models_dir / "tiny_pretrain.pth").read_bytes() == b"earlier file"
    assert [p.name for p in models_dir.iterdir()] == ["tiny_pretrain.pth"]


def test_size_mismatch(capsys, manifest, models_dir):
    manifest(size=12)
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 2 and "expected 12" in err and not list(models_dir.iterdir())


def test_http_404(capsys, manifest, models_dir):
    manifest(url_path="missing.pth")
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 2 and "HTTP 404" in err and not list(models_dir.iterdir())


def test_offline_says_where_to_put_the_file(capsys, tmp_path, monkeypatch, models_dir):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"models": {"tiny": {"file": "t.pth", "url": f"http://127.0.0.1:{port}/t.pth",
                                                    "arch": "vits14", "registers": 0, "sha256": "ab" * 32}}}))
    monkeypatch.setenv("SPATIALQ_MODELS_MANIFEST", str(path))
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 2 and "by hand" in err and str(models_dir / "t.pth") in err and "ab" * 32 in err


def test_unpinned_hash_prints_the_computed_one(capsys, manifest, models_dir):
    manifest(sha=None, size=None)
    code, out, _ = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 0 and hashlib.sha256(PAYLOAD).hexdigest() in out and "not pinned" in out


def test_unknown_name(capsys, manifest):
    code, _, err = run(capsys, "fetch", "vit_huge")
    assert code == 2 and "known: tiny" in err


def test_verify(capsys, manifest, tmp_path):
    good = tmp_path / "anything.pth"
    good.write_bytes(PAYLOAD)
    assert run(capsys, "verify", str(good))[0] == 0
    bad = tmp_path / "tiny_pretrain.pth"
    bad.write_bytes(b"tampered")
    code, _, err = run(capsys, "verify", str(bad))
    assert code == 2 and "MISMATCH" in err
    stranger = tmp_path / "stranger.pth"
    stranger.write_bytes(b"?")
    code, _, err = run(capsys, "verify", str(stranger))
    assert code == 2 and "unknown file" in err
    code, _, err = run(capsys, "verify", str(tmp_path / "none.pth"))
    assert code == 2 and "no such file" in err


def test_shipped_manifest_lists_the_official_checkpoints():
    manifest = load_manifest(DEFAULT_MANIFEST)
    assert set(manifest) >= {"dinov2_vits14", "dinov2_vitb14", "dinov2_vits14_reg4", "dinov2_vitb14_reg4"}
    for entry in manifest.values():
        assert entry.url.startswith("https://dl.fbaipublicfiles.com/dinov2/") and entry.url.endswith(entry.file)
        assert entry.sha256 is None or len(entry.sha256) == 64
