"""`spatialq models list | fetch NAME | verify PATH`: official DINOv2 checkpoints, checked by sha256."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="known checkpoints and whether they are in --dir")
    listing.add_argument("--dir", default="models", help="model folder (default models/)")
    fetch = sub.add_parser("fetch", help="download a checkpoint with progress and checksum")
    fetch.add_argument("name")
    fetch.add_argument("--dir", default="models", help="model folder (default models/)")
    fetch.add_argument("--url", help="mirror URL instead of the official one")
    verify = sub.add_parser("verify", help="check a checkpoint file against the manifest")
    verify.add_argument("path")


def run(args: argparse.Namespace) -> int:
    from ..zoo.manifest import load_manifest

    manifest = load_manifest()
    return {"list": _list, "fetch": _fetch, "verify": _verify}[args.action](args, manifest)


def _status(path: Path, entry) -> str:
    from ..hashing import file_sha256

    if not path.is_file():
        return "missing"
    if entry.sha256 is None:
        return "present (hash not pinned)"
    return "verified" if file_sha256(path) == entry.sha256 else "MISMATCH"


def _list(args, manifest) -> int:
    print(f"{'name':<22} {'arch':<12} {'size MB':>8}  status in {args.dir}/")
    for entry in manifest.values():
        size = f"{entry.size / 1e6:.1f}" if entry.size else "?"
        print(f"{entry.name:<22} {entry.arch:<12} {size:>8}  {_status(Path(args.dir) / entry.file, entry)}")
    return 0


def _fetch(args, manifest) -> int:
    from ..errors import SpatialqError
    from ..zoo.download import download
    from ..zoo.manifest import entry as find

    entry = find(args.name, manifest)
    directory = Path(args.dir)
    if not directory.is_dir():
        raise SpatialqError(f"{directory}: folder does not exist")
    target = directory / entry.file
    if _status(target, entry) == "verified":
        print(f"{target}: already present and verified")
        return 0
    path, digest = download(entry, directory, args.url)
    if entry.sha256 is None:
        print(f"wrote {path}; sha256 {digest} (not pinned in the manifest: compare with a trusted source)")
    else:
        print(f"wrote {path}; sha256 verified")
    return 0


def _verify(args, manifest) -> int:
    from ..errors import SpatialqError
    from ..hashing import file_sha256

    path = Path(args.path)
    if not path.is_file():
        raise SpatialqError(f"{path}: no such file")
    digest = file_sha256(path)
    by_hash = [e for e in manifest.values() if e.sha256 == digest]
    if by_hash:
        print(f"{path}: OK, {by_hash[0].name} (sha256 {digest})")
        return 0
    by_name = [e for e in manifest.values() if e.file == path.name]
    if not by_name:
        raise SpatialqError(f"{path}: unknown file, sha256 {digest} is not in the manifest")
    entry = by_name[0]
    if entry.sha256 is None:
        print(f"{path}: {entry.name}, sha256 {digest}; the manifest does not pin a hash yet, so it is UNVERIFIED")
        return 0
    raise SpatialqError(f"{path}: MISMATCH for {entry.name}: sha256 {digest}, expected {entry.sha256}")
