"""`spatialq models list | fetch NAME | verify PATH`: official DINOv2 and DINOv3 checkpoints, checked by size and
sha256 (licence-gated DINOv3: fetched only from a --url the user obtained, checked by the official sha256 prefix)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DIR = "models"


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="known checkpoints and whether they are in --dir, verified")
    listing.add_argument("--dir", default=DEFAULT_DIR, help="model folder (default models/)")
    fetch = sub.add_parser("fetch", help="download a checkpoint with a progress bar, check size and sha256")
    fetch.add_argument("name", help="a name from `spatialq models list`")
    fetch.add_argument("--dir", default=DEFAULT_DIR, help="model folder, created if needed (default models/)")
    fetch.add_argument("--url", help="download from this mirror instead of the official URL (still checked); "
                       "for licence-gated DINOv3 weights, the URL you were given")
    verify = sub.add_parser("verify", help="check a checkpoint file against the manifest")
    verify.add_argument("path")


def run(args: argparse.Namespace) -> int:
    from ..zoo.manifest import load_manifest

    manifest = load_manifest()
    return {"list": _list, "fetch": _fetch, "verify": _verify}[args.action](args, manifest)


def _list(args: argparse.Namespace, manifest: dict) -> int:
    from ..zoo.check import file_status

    directory = Path(args.dir)
    print(f"{'name':<20} {'arch':<12} {'regs':>4} {'size MB':>8}  {'license':<11} in {directory}/")
    for entry in manifest.values():
        size = f"{entry.size / 1e6:.1f}" if entry.size else "?"
        status = file_status(directory / entry.file, entry)
        print(f"{entry.name:<20} {entry.arch:<12} {entry.registers:>4} {size:>8}  {entry.license:<11} {status}")
    for entry in manifest.values():
        if entry.access:
            print(f"{entry.name}: {entry.access}")
    return 0


def _fetch(args: argparse.Namespace, manifest: dict) -> int:
    from ..errors import SpatialqError
    from ..hashing import file_sha256
    from ..zoo.check import MISMATCH, PREFIX_VERIFIED, UNPINNED, VERIFIED, file_status
    from ..zoo.download import download
    from ..zoo.manifest import find_entry

    entry = find_entry(args.name, manifest)
    directory = Path(args.dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpatialqError(f"{directory}: cannot create the model folder ({exc.strerror or exc})") from None
    target = directory / entry.file
    status = file_status(target, entry)
    if status in (VERIFIED, PREFIX_VERIFIED):
        how = "" if status == VERIFIED else f" by the official sha256 prefix {entry.sha256_prefix}"
        print(f"{target}: already present and verified{how}; nothing to download")
        return 0
    if status == UNPINNED:
        print(f"{target}: already present, but the manifest pins no sha256 for {entry.name}, so it is NOT "
              f"verified; its sha256 is {file_sha256(target)} (delete the file to download it again)")
        return 0
    if status == MISMATCH:
        print(f"{target}: does not match the manifest; downloading a fresh copy (the old file stays until "
              "the new one is verified)", file=sys.stderr)
    path, digest = download(entry, directory, args.url)
    if entry.sha256 is None and entry.sha256_prefix:
        print(f"wrote {path}; sha256 {digest} starts with {entry.sha256_prefix}, the official file name's")
    elif entry.sha256 is None:
        print(f"wrote {path}; sha256 {digest} is NOT verified: the manifest pins no hash for {entry.name} yet "
              "(compare it with a trusted source, then pin it)")
    else:
        print(f"wrote {path}; size and sha256 verified")
    return 0


def _verify(args: argparse.Namespace, manifest: dict) -> int:
    from ..errors import SpatialqError
    from ..hashing import file_sha256
    from ..zoo.check import identify

    path = Path(args.path)
    if not path.exists():
        raise SpatialqError(f"{path}: no such file")
    if not path.is_file():
        raise SpatialqError(f"{path}: not a file")
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise SpatialqError(f"{path}: cannot read ({exc.strerror or exc})") from None
    entry = identify(path, digest, manifest)
    if entry is None:
        raise SpatialqError(f"{path}: unknown file: neither its name nor its sha256 {digest} is in the manifest "
                            f"(known: {', '.join(e.file for e in manifest.values())})")
    if entry.sha256 == digest:
        print(f"{path}: OK, {entry.name} ({entry.arch}, sha256 {digest})")
        return 0
    if entry.sha256 is None and entry.sha256_prefix:
        if digest.startswith(entry.sha256_prefix):
            print(f"{path}: OK, {entry.name} ({entry.arch}, sha256 {digest} starts with {entry.sha256_prefix}, the "
                  "official file name's; the full hash is not public)")
            return 0
        raise SpatialqError(f"{path}: MISMATCH for {entry.name}: sha256 {digest}, expected it to start with "
                            f"{entry.sha256_prefix}")
    if entry.sha256 is None:
        print(f"{path}: {entry.name}, sha256 {digest}: NOT verified, the manifest pins no hash for it yet")
        return 0
    raise SpatialqError(f"{path}: MISMATCH for {entry.name}: sha256 {digest}, expected {entry.sha256}")
