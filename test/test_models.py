"""`spatialq models` against a real HTTP server on 127.0.0.1, with a test manifest naming its files."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from spatialq_ros.cli import main
from spatialq_ros.errors import SpatialqError
from spatialq_ros.zoo.manifest import DEFAULT_MANIFEST, MANIFEST_ENV, load_manifest

PAYLOAD = bytes(range(256)) * 800  # 200 KiB; reversed, the same size with another hash
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
REPO_MANIFEST = Path(__file__).resolve().parents[1] / "models" / "manifest.json"


class Server:
    """Serves PAYLOAD at /tiny.pth, the same bytes without a length at /nolength.pth, a body cut short
    of its Content-Length at /truncated.pth, and 404 elsewhere; counts the requests it answers."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                if self.path == "/tiny.pth":
                    self._send(PAYLOAD, len(PAYLOAD))
                elif self.path == "/nolength.pth":
                    self._send(PAYLOAD, None)
                elif self.path == "/truncated.pth":
                    self._send(PAYLOAD[:1000], len(PAYLOAD))
                else:
                    self.send_error(404)

            def _send(self, body: bytes, length: int | None) -> None:
                self.send_response(200)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server():
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def manifest(tmp_path, server, monkeypatch):
    """Writes a one-model manifest ("tiny") and points SPATIALQ_MODELS_MANIFEST at it; call to change it."""

    def write(url: str | None = None, sha256: str | None = PAYLOAD_SHA, size: int | None = len(PAYLOAD)):
        model = {"file": "tiny_pretrain.pth", "url": url or f"{server.url}/tiny.pth", "arch": "vits14",
                 "registers": 0, "size": size, "sha256": sha256}
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps({"format_version": 1, "license": "Apache-2.0", "models": {"tiny": model}}))
        monkeypatch.setenv(MANIFEST_ENV, str(path))

    write()
    return write


@pytest.fixture
def models_dir(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    return d


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["models", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    """The CLI's error: the last stderr line (tqdm may have drawn a bar above it), prefixed, one line."""
    last = err.strip().splitlines()[-1]
    assert last.startswith("spatialq models: error: ")
    assert "Traceback" not in err
    return last


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_fetch_verifies_renames_and_does_not_download_twice(capsys, server, manifest, models_dir):
    code, out, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 0 and "size and sha256 verified" in out
    assert "tiny_pretrain.pth" in err  # the tqdm bar, named after the file
    assert (models_dir / "tiny_pretrain.pth").read_bytes() == PAYLOAD
    assert files_in(models_dir) == ["tiny_pretrain.pth"]
    code, out, _ = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 0 and "already present and verified" in out
    assert server.requests == ["/tiny.pth"]


def test_fetch_creates_the_folder_and_takes_a_mirror_url(capsys, server, manifest, tmp_path):
    manifest(url="http://127.0.0.1:9/never-used.pth")
    target_dir = tmp_path / "new" / "models"
    code, out, _ = run(capsys, "fetch", "tiny", "--dir", str(target_dir), "--url", f"{server.url}/tiny.pth")
    assert code == 0 and (target_dir / "tiny_pretrain.pth").read_bytes() == PAYLOAD
    assert server.requests == ["/tiny.pth"]


def test_hash_mismatch_keeps_the_old_file_and_leaves_no_temp(capsys, manifest, models_dir):
    (models_dir / "tiny_pretrain.pth").write_bytes(b"earlier file")
    manifest(sha256="0" * 64)
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    line = one_error_line(err)
    assert code == 2 and "does not match" in line and PAYLOAD_SHA in line and "nothing written" in line
    assert (models_dir / "tiny_pretrain.pth").read_bytes() == b"earlier file"
    assert files_in(models_dir) == ["tiny_pretrain.pth"]


def test_a_bad_existing_file_is_replaced_by_a_verified_download(capsys, manifest, models_dir):
    (models_dir / "tiny_pretrain.pth").write_bytes(b"x" * len(PAYLOAD))
    code, out, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 0 and "does not match the manifest" in err
    assert (models_dir / "tiny_pretrain.pth").read_bytes() == PAYLOAD


def test_size_announced_by_the_server_differs(capsys, server, manifest, models_dir):
    manifest(size=12)
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 2 and f"serves {len(PAYLOAD)} bytes, expected 12" in one_error_line(err)
    assert files_in(models_dir) == []


def test_size_of_an_unannounced_body_differs(capsys, server, manifest, models_dir):
    manifest(url=f"{server.url}/nolength.pth", size=len(PAYLOAD) + 1)
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 2 and f"downloaded {len(PAYLOAD)} bytes" in one_error_line(err)
    assert files_in(models_dir) == []


def test_connection_closed_early(capsys, server, manifest, models_dir):
    manifest(url=f"{server.url}/truncated.pth", size=None, sha256=None)
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 2 and f"after 1000 of {len(PAYLOAD)} bytes" in one_error_line(err)
    assert files_in(models_dir) == []


def test_http_404_from_a_mirror_says_how_to_get_the_file_by_hand(capsys, server, manifest, models_dir):
    mirror = f"{server.url}/missing.pth"
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir), "--url", mirror)
    line = one_error_line(err)
    assert code == 2 and f"from {mirror} (HTTP 404" in line and f"download {server.url}/tiny.pth by hand" in line
    assert str(models_dir / "tiny_pretrain.pth") in line and PAYLOAD_SHA in line
    assert files_in(models_dir) == []


def test_offline_says_where_to_put_the_file(capsys, manifest, models_dir):
    with socket.socket() as s:  # a port that nobody listens on once this socket closes
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/t.pth"
    manifest(url=url)
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    line = one_error_line(err)
    assert code == 2 and "could not download" in line and "offline?" in line
    assert url in line and str(models_dir / "tiny_pretrain.pth") in line and PAYLOAD_SHA in line
    assert files_in(models_dir) == []


def test_unpinned_hash_is_reported_never_claimed_verified(capsys, server, manifest, models_dir, tmp_path):
    manifest(sha256=None, size=None)
    code, out, _ = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 0 and PAYLOAD_SHA in out and "NOT verified" in out and "pins no hash" in out
    code, out, _ = run(capsys, "fetch", "tiny", "--dir", str(models_dir))
    assert code == 0 and "NOT verified" in out and PAYLOAD_SHA in out
    assert server.requests == ["/tiny.pth"]
    code, out, _ = run(capsys, "verify", str(models_dir / "tiny_pretrain.pth"))
    assert code == 0 and "NOT verified" in out and "OK" not in out
    code, out, _ = run(capsys, "list", "--dir", str(models_dir))
    assert "hash not pinned" in out


def test_bad_mirror_url(capsys, manifest, models_dir):
    code, _, err = run(capsys, "fetch", "tiny", "--dir", str(models_dir), "--url", "not a url")
    assert code == 2 and "bad download URL 'not a url'" in one_error_line(err) and files_in(models_dir) == []


def test_unknown_name_lists_the_known_ones(capsys, manifest):
    code, _, err = run(capsys, "fetch", "vit_huge")
    assert code == 2 and "unknown model 'vit_huge'; known: tiny" in one_error_line(err)


def test_verify(capsys, manifest, tmp_path):
    renamed = tmp_path / "anything.pth"
    renamed.write_bytes(PAYLOAD)
    code, out, _ = run(capsys, "verify", str(renamed))
    assert code == 0 and "OK, tiny" in out
    tampered = tmp_path / "tiny_pretrain.pth"
    tampered.write_bytes(b"tampered")
    code, _, err = run(capsys, "verify", str(tampered))
    assert code == 2 and "MISMATCH for tiny" in one_error_line(err)
    stranger = tmp_path / "stranger.pth"
    stranger.write_bytes(b"?")
    code, _, err = run(capsys, "verify", str(stranger))
    assert code == 2 and "unknown file" in one_error_line(err)
    code, _, err = run(capsys, "verify", str(tmp_path / "none.pth"))
    assert code == 2 and "no such file" in one_error_line(err)
    code, _, err = run(capsys, "verify", str(tmp_path))
    assert code == 2 and "not a file" in one_error_line(err)


def test_list_shows_each_state(capsys, manifest, models_dir, tmp_path):
    code, out, _ = run(capsys, "list", "--dir", str(models_dir))
    header, row = out.splitlines()
    assert code == 0 and "size MB" in header and row.split()[:5] == ["tiny", "vits14", "0", "0.2", "Apache-2.0"]
    assert row.endswith("missing")
    (models_dir / "tiny_pretrain.pth").write_bytes(PAYLOAD)
    assert run(capsys, "list", "--dir", str(models_dir))[1].splitlines()[1].endswith("verified")
    (models_dir / "tiny_pretrain.pth").write_bytes(PAYLOAD[::-1])  # same size, other bytes
    assert run(capsys, "list", "--dir", str(models_dir))[1].splitlines()[1].endswith("MISMATCH")


def test_a_broken_manifest_is_one_line(capsys, tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": {"x": {"file": "x.pth", "url": "u", "arch": "vits14", "registers": 0,
                                                "sha256": "not-a-hash"}}}))
    monkeypatch.setenv(MANIFEST_ENV, str(bad))
    code, _, err = run(capsys, "list")
    assert code == 2 and "unreadable model manifest" in one_error_line(err) and "not-a-hash" in err
    with pytest.raises(SpatialqError, match="unreadable"):
        load_manifest(tmp_path / "absent.json")


def test_shipped_manifest_pins_the_official_checkpoints(monkeypatch):
    from spatialq_ros.backbone.archs import ARCHS

    monkeypatch.delenv(MANIFEST_ENV, raising=False)
    manifest = load_manifest()
    dinov2 = {k: v for k, v in manifest.items() if k.startswith("dinov2_")}
    assert set(dinov2) == {"dinov2_vits14", "dinov2_vitb14", "dinov2_vits14_reg4", "dinov2_vitb14_reg4"}
    for name, entry in dinov2.items():
        base = name.removesuffix("_reg4")  # the hub keeps register variants in the plain model's folder
        assert entry.file == f"{name}_pretrain.pth"
        assert entry.url == f"https://dl.fbaipublicfiles.com/dinov2/{base}/{entry.file}"
        assert entry.arch in ARCHS and ARCHS[entry.arch].num_register_tokens == entry.registers
        assert entry.registers == (4 if name.endswith("_reg4") else 0)
        assert entry.license == "Apache-2.0" and entry.sha256 is not None and entry.size is not None
    # fp32 weights: ~22M and ~87M parameters at 4 bytes each, plus the pickle around them
    assert 85e6 < manifest["dinov2_vits14"].size < manifest["dinov2_vits14_reg4"].size < 90e6
    assert 340e6 < manifest["dinov2_vitb14"].size < manifest["dinov2_vitb14_reg4"].size < 350e6


def test_shipped_manifest_lists_the_licence_gated_dinov3_weights(monkeypatch):
    """DINOv3 files as dinov3/hub/backbones.py names them (hash suffix = sha256 prefix), no public URL."""
    from spatialq_ros.backbone.archs import ARCHS

    monkeypatch.delenv(MANIFEST_ENV, raising=False)
    dinov3 = {k: v for k, v in load_manifest().items() if k.startswith("dinov3_")}
    prefixes = {"vits16": "08c60483", "vits16plus": "4057cbaa", "vitb16": "73cec8be", "vitl16": "8aa4cbdd"}
    assert set(dinov3) == {f"dinov3_{arch}" for arch in prefixes}
    for name, entry in dinov3.items():
        arch = name.removeprefix("dinov3_")
        assert entry.file == f"{name}_pretrain_lvd1689m-{prefixes[arch]}.pth" and entry.sha256_prefix == prefixes[arch]
        assert entry.url is None and entry.sha256 is None and entry.size is None and entry.license == "DINOv3"
        assert entry.arch == arch and ARCHS[arch].num_register_tokens == entry.registers == 4
        assert "dinov3-downloads" in entry.access and f"huggingface.co/facebook/dinov3-{arch}-pretrain-lvd1689m" in entry.access


@pytest.fixture
def gated(tmp_path, monkeypatch):
    """A manifest with one licence-gated entry ("gated"): no URL, the sha256 prefix of PAYLOAD (or another)."""

    def write(prefix: str = PAYLOAD_SHA[:8]):
        model = {"file": f"gated_pretrain-{prefix}.pth", "url": None, "arch": "vits16", "registers": 4,
                 "license": "DINOv3", "access": "licence-gated: ask at https://example.org/form", "size": None,
                 "sha256": None, "sha256_prefix": prefix}
        path = tmp_path / "gated.json"
        path.write_text(json.dumps({"format_version": 1, "models": {"gated": model}}))
        monkeypatch.setenv(MANIFEST_ENV, str(path))
        return model["file"]

    return write


def test_a_licence_gated_model_is_not_fetched_without_a_url(capsys, gated, models_dir):
    gated()
    code, _, err = run(capsys, "fetch", "gated", "--dir", str(models_dir))
    line = one_error_line(err)
    assert code == 2 and "cannot be downloaded automatically (DINOv3 licence)" in line
    assert "https://example.org/form" in line and files_in(models_dir) == []
    code, out, _ = run(capsys, "list", "--dir", str(models_dir))
    assert code == 0 and "gated: licence-gated: ask at https://example.org/form" in out


def test_a_licence_gated_model_is_fetched_from_the_given_url_and_checked_by_prefix(capsys, server, gated, models_dir):
    name = gated()
    code, out, _ = run(capsys, "fetch", "gated", "--dir", str(models_dir), "--url", f"{server.url}/tiny.pth")
    assert code == 0 and f"starts with {PAYLOAD_SHA[:8]}" in out and (models_dir / name).read_bytes() == PAYLOAD
    code, out, _ = run(capsys, "fetch", "gated", "--dir", str(models_dir))
    assert code == 0 and "already present and verified by the official sha256 prefix" in out
    code, out, _ = run(capsys, "verify", str(models_dir / name))
    assert code == 0 and "OK, gated" in out
    assert run(capsys, "list", "--dir", str(models_dir))[1].splitlines()[1].endswith("verified (sha256 prefix)")
    (models_dir / name).write_bytes(PAYLOAD[::-1])
    code, _, err = run(capsys, "verify", str(models_dir / name))
    assert code == 2 and "MISMATCH for gated" in one_error_line(err)


def test_a_licence_gated_download_with_another_prefix_writes_nothing(capsys, server, gated, models_dir):
    gated(prefix="00000000")
    code, _, err = run(capsys, "fetch", "gated", "--dir", str(models_dir), "--url", f"{server.url}/tiny.pth")
    line = one_error_line(err)
    assert code == 2 and "does not start with 00000000" in line and "nothing written" in line
    assert files_in(models_dir) == []


def test_repository_copy_of_the_manifest_is_identical():
    assert REPO_MANIFEST.read_bytes() == DEFAULT_MANIFEST.read_bytes()
