#!/usr/bin/env python3
"""ARM correctness without an ARM machine: `spatialq features` of a W4A8 artifact under qemu-user vs x86.

The command runs in an arm64 Debian under qemu-user and on this x86 machine; their outputs are compared.

    sudo .venv/bin/python scripts/arm_check.py --artifact ARTIFACT [--image frame.png]
         [--qemu-cpus cortex-a72 neoverse-n1 max,sve=off] [--cache ~/.cache/spatialq_ros] [--out arm_check_out]

What it checks: the numbers of ONNX Runtime's aarch64 CPU kernels (MLAS: NEON, plus sdot/udot where the
emulated CPU advertises dot-product and smmla where it advertises i8mm) on the artifact's graphs, against
ORT's x86 kernels, through the deploy path (numpy, cv2, onnxruntime; no torch is installed there). The CPU
is qemu's model of one, not a real core: timing under emulation means nothing and is not measured. Each
--qemu-cpus model runs once: cortex-a72 has NEON only (a Raspberry Pi 4), neoverse-n1 adds dot-product
(the Jetson Orin's class), `max,sve=off` adds i8mm. `max` (SVE too) works, but qemu runs SVE code so
slowly (a 56x56 artifact's graphs took minutes each) that it is not in the default list.

Steps, each kept in --cache (a rerun redoes only the comparison):
  1. apt-get installs qemu-user-static, debootstrap and binfmt-support where missing; binfmt_misc is
     mounted and qemu-aarch64 enabled, so the root's programs run through qemu.
  2. debootstrap: a minbase arm64 Debian (--suite, default bookworm) with python3 and python3-venv.
  3. The host's pip downloads the aarch64 wheels of onnxruntime, numpy and opencv-python-headless at
     requirements.txt's pins (and their dependencies); a venv in the root installs them offline.
  4. spatialq_ros/, this script, the artifact and the image are copied in; `--inside` runs `spatialq
     features` and each artifact graph here and under each QEMU_CPU; the patch tokens are compared.
Exits 1 when a patch cosine of `spatialq features` falls under --min-cosine (default 0.999), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHEELS = ("onnxruntime", "numpy", "opencv-python-headless")  # what the deploy path imports
EXTRA_GRAPHS = ("qdq", "int4", "fp32")  # the artifact's other graphs (`spatialq features` runs model_cpu.onnx)
INSIDE = Path("/opt/spatialq")  # the root's copy of the project, its venv and wheels
DEFAULT_CPUS = ("cortex-a72", "neoverse-n1", "max,sve=off")
# Linux aarch64 hwcaps (arch/arm64/include/uapi/asm/hwcap.h): what qemu tells the guest its CPU has
HWCAP_BITS = {"asimd": 1, "asimddp": 20, "sve": 22}
HWCAP2_BITS = {"sve2": 1, "i8mm": 13}
AT_HWCAP, AT_HWCAP2 = 16, 26


class CheckError(Exception):
    """Bad input or a missing prerequisite: one line, exit 2."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", help="W4A8 artifact folder (spatialq calibrate --out)")
    parser.add_argument("--image", help="input frame; default: frame 0 of simulated flight seed 1 "
                        "(not a calibration frame) at the artifact's size")
    parser.add_argument("--qemu-cpus", nargs="+", default=DEFAULT_CPUS,
                        help=f"QEMU_CPU values to run under (default {' '.join(DEFAULT_CPUS)})")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "spatialq_ros",
                        help="where the arm64 root and its wheels are kept (default ~/.cache/spatialq_ros)")
    parser.add_argument("--suite", default="bookworm", help="Debian suite of the arm64 root (default bookworm)")
    parser.add_argument("--mirror", default="http://deb.debian.org/debian", help="Debian mirror for debootstrap")
    parser.add_argument("--out", type=Path, default=Path("arm_check_out"), help="outputs and agreement.json")
    parser.add_argument("--graphs", nargs="*", choices=EXTRA_GRAPHS, default=EXTRA_GRAPHS,
                        help="artifact graphs also run by name and compared (default all: qdq int4 fp32)")
    parser.add_argument("--min-cosine", type=float, default=0.999, help="patch cosine target (default 0.999)")
    parser.add_argument("--inside", nargs="+", metavar="ARTIFACT IMAGE OUT [GRAPH]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        if args.inside:
            artifact, image, out, *graphs = args.inside
            return run_features(Path(artifact), Path(image), Path(out), graphs)
        if not args.artifact:
            raise CheckError("--artifact is required")
        return check(args)
    except CheckError as exc:
        print(f"arm_check: error: {exc}", file=sys.stderr)
        return 2


# ---- both sides: one run of the deploy path ----------------------------------------------------------------

def run_features(artifact: Path, image: Path, out: Path, graphs: list[str]) -> int:
    """`spatialq features` as a user runs it, then `graphs` of the artifact by name; env.json says where."""
    import numpy as np
    import onnxruntime as ort

    from spatialq_ros.bench.cpu_class import read_cpu_class
    from spatialq_ros.imageio import read_rgb
    from spatialq_ros.runtime.onnx_engine import GRAPHS as FILES, OnnxEngine, auto_graph

    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "spatialq_ros.cli", "features", "--image", str(image),
               "--model", str(artifact), "--out", str(out / "features.npz")]
    trace = {"QEMU_LOG": "in_asm", "QEMU_LOG_FILENAME": str(out / "qemu_in_asm.log")} if os.environ.get(
        "QEMU_CPU") else {}  # under qemu: which instructions `spatialq features` reached
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, **trace})
    if result.returncode:
        print(result.stdout + result.stderr, file=sys.stderr)
        raise CheckError(f"spatialq features failed on {platform.machine()} (exit {result.returncode})")
    rgb = read_rgb(image)
    graphs = [g for g in graphs if (artifact / FILES[g]).is_file()]
    for graph in graphs:
        f = OnnxEngine(artifact, graph).infer(rgb)
        np.savez(out / f"graph_{graph}.npz", patch_tokens=f.patch_tokens, cls_token=f.cls_token,
                 value_facet=f.value_facet)
    cpu = read_cpu_class()
    env = {"machine": platform.machine(), "python": platform.python_version(), "onnxruntime": ort.__version__,
           "numpy": np.__version__, "auto_graph": FILES[auto_graph(artifact)], "graphs": graphs,
           "proc_cpuinfo": cpu.as_dict(), "hwcaps": aarch64_hwcaps(), "qemu_cpu": os.environ.get("QEMU_CPU"),
           "ort_messages": sorted({line.strip() for line in result.stderr.splitlines()
                                   if "cpuinfo" in line.lower()})}
    (out / "env.json").write_text(json.dumps(env, indent=1))
    return 0


def aarch64_hwcaps() -> list[str] | None:
    """The INT8 features in this process's aux vector (AT_HWCAP/AT_HWCAP2): under qemu-user, qemu's CPU
    model, whatever /proc/cpuinfo (the host's, in qemu 7.2) says. None off aarch64."""
    if platform.machine() != "aarch64":
        return None
    data = Path("/proc/self/auxv").read_bytes()
    aux = dict(struct.unpack_from("<QQ", data, i) for i in range(0, len(data) - 15, 16))
    hwcap, hwcap2 = aux.get(AT_HWCAP, 0), aux.get(AT_HWCAP2, 0)
    return ([name for name, bit in HWCAP_BITS.items() if hwcap >> bit & 1]
            + [name for name, bit in HWCAP2_BITS.items() if hwcap2 >> bit & 1])


# ---- host: the arm64 root ---------------------------------------------------------------------------------

def sh(*command: str, **kwargs) -> subprocess.CompletedProcess:
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    return subprocess.run(command, check=True, **kwargs)


def install_host_tools() -> None:
    if not all(map(shutil.which, ("debootstrap", "qemu-aarch64-static", "update-binfmts"))):
        sh("apt-get", "update")
        sh("apt-get", "install", "-y", "qemu-user-static", "debootstrap", "binfmt-support")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        sh("mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt))
    entry = binfmt / "qemu-aarch64"
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        sh("update-binfmts", "--enable", "qemu-aarch64")
    if not entry.exists() or "F" not in re.search(r"flags: (\S*)", entry.read_text()).group(1):
        raise CheckError(f"{entry}: qemu-aarch64 is not registered with the F flag; arm64 programs cannot run")


def build_root(root: Path, suite: str, mirror: str) -> None:
    ready = root / ".spatialq-root-ready"
    if ready.is_file():
        return
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    sh("debootstrap", "--arch=arm64", "--variant=minbase", "--include=python3,python3-venv", suite,
       str(partial), mirror)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    ready.write_text(f"{suite} {mirror}\n")


def chroot(root: Path, *command: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """A program of the root, through qemu; QEMU_CPU in `env` picks the CPU model qemu emulates."""
    base = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8", "HOME": "/root"}
    return sh("chroot", str(root), *command, env={**base, **(env or {})}, **kwargs)


def pins() -> list[str]:
    text = (REPO / "requirements.txt").read_text()
    found = {m.group(1).lower(): m.group(0) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==[^\s#]+", text, re.M)}
    missing = [name for name in WHEELS if name not in found]
    if missing:
        raise CheckError(f"requirements.txt pins no {', '.join(missing)}")
    return [found[name] for name in WHEELS]


def install_wheels(root: Path) -> Path:
    """The root's venv with the deploy path's aarch64 wheels; returns its python (a path inside the root)."""
    wanted = pins()
    stamp = root / INSIDE.relative_to("/") / "venv" / ".spatialq-wheels"
    python = INSIDE / "venv" / "bin" / "python"
    if stamp.is_file() and stamp.read_text().split() == wanted:
        return python
    version = chroot(root, "/usr/bin/python3", "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
                     capture_output=True, text=True).stdout.strip()
    wheels = root / INSIDE.relative_to("/") / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    sh(sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheels), "--only-binary=:all:",
       "--implementation", "cp", "--python-version", version, "--platform", "manylinux2014_aarch64",
       "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux_2_28_aarch64", *wanted)
    if not (root / python.relative_to("/")).exists():
        chroot(root, "/usr/bin/python3", "-m", "venv", str(INSIDE / "venv"))
    chroot(root, str(python), "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
           str(INSIDE / "wheels"), *wanted)
    stamp.write_text("\n".join(wanted) + "\n")
    return python


def copy_project(root: Path, artifact: Path, image: Path) -> tuple[Path, Path]:
    """Fresh copies of the package, this script, the artifact and the image; their paths inside the root."""
    src = root / INSIDE.relative_to("/") / "src"
    work = root / INSIDE.relative_to("/") / "work"
    for folder in (src, work):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(REPO / "spatialq_ros", src / "spatialq_ros", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "scripts").mkdir()
    shutil.copy2(Path(__file__), src / "scripts" / "arm_check.py")
    shutil.copytree(artifact, work / "artifact", ignore=shutil.ignore_patterns("*.png", "*.md"))
    shutil.copy2(image, work / image.name)
    return INSIDE / "work" / "artifact", INSIDE / "work" / image.name


class MountedProc:
    """/proc inside the root while it runs (its /proc/cpuinfo is read and reported). /sys stays out: with
    both, ORT's cpuinfo library crashes under qemu parsing the host's x86 /proc/cpuinfo; without /sys it
    gives up, and ORT reads the CPU features from the aux vector, which qemu fills from its CPU model."""

    def __init__(self, root: Path) -> None:
        self.point = root / "proc"
        self.mounted = False

    def __enter__(self) -> MountedProc:
        if not os.path.ismount(self.point):
            sh("mount", "-t", "proc", "proc", str(self.point))
            self.mounted = True
        return self

    def __exit__(self, *exc) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.point)], check=False)


# INT8 instructions by encoding (Arm ARM, A64): (mask, value) of the 32-bit word. qemu 7.2's disassembler
# prints most of them as `.byte`, so the words are decoded here.
INT8_INSTRUCTIONS = {
    "neon sdot/udot": ((0xbfe0fc00, 0x0e809400), (0xbfe0fc00, 0x2e809400),
                       (0xbfc0f400, 0x0f80e000), (0xbfc0f400, 0x2f80e000)),
    "neon smmla/ummla/usmmla": ((0xffe0fc00, 0x4e80a400), (0xffe0fc00, 0x6e80a400), (0xffe0fc00, 0x4e80ac00)),
    "sve sdot/udot": ((0xffa0f800, 0x44800000), (0xffa0f800, 0x44a00000)),
    "sve smmla/ummla/usmmla": ((0xff20fc00, 0x45009800),),
}


def side_name(qemu_cpu: str) -> str:
    return "aarch64-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", qemu_cpu)


def int8_instructions(log: Path) -> dict[str, int]:
    """Distinct translated code addresses per INT8 instruction class in a qemu `-d in_asm` log: code qemu
    translated is code the guest reached, so a class with 0 never ran."""
    seen: dict[str, set[str]] = {name: set() for name in INT8_INSTRUCTIONS}
    line = re.compile(r"^(0x[0-9a-f]+):\s+([0-9a-f]{8})\b")
    with log.open(errors="replace") as lines:
        for text in lines:
            m = line.match(text)
            if not m:
                continue
            word = int(m.group(2), 16)
            for name, patterns in INT8_INSTRUCTIONS.items():
                if any(word & mask == value for mask, value in patterns):
                    seen[name].add(m.group(1))
    return {name: len(addresses) for name, addresses in seen.items()}


# ---- host: the comparison ---------------------------------------------------------------------------------

def cosines(a, b):
    import numpy as np

    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


def agreement(x86: Path, arm: Path) -> dict:
    import numpy as np

    a, b = np.load(x86), np.load(arm)
    patch = cosines(b["patch_tokens"], a["patch_tokens"])
    ref = a["patch_tokens"].astype(np.float64)
    return {"patch_cosine_mean": float(patch.mean()), "patch_cosine_min": float(patch.min()),
            "cls_cosine": float(cosines(b["cls_token"], a["cls_token"])[0]),
            "max_abs_err_rel": float(np.abs(b["patch_tokens"] - ref).max() / np.abs(ref).max()),
            "bit_identical": bool(np.array_equal(a["patch_tokens"], b["patch_tokens"])
                                  and np.array_equal(a["cls_token"], b["cls_token"]))}


def default_image(artifact: Path, out: Path) -> Path:
    """Frame 0 of simulated flight seed 1 at the artifact's size: a frame no calibration of seed 0 saw."""
    from spatialq_ros.runtime.factory import artifact_meta
    from spatialq_ros.sim.render import render_flight
    from spatialq_ros.viz.pictures import write_png

    size = tuple(artifact_meta(artifact)["size"])
    _, frames = render_flight(1, size, seed=1)
    rgb, _ = next(frames)
    path = out / "frame.png"
    write_png(path, rgb)
    return path


def check(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise CheckError("run as root: it installs packages, registers qemu with binfmt_misc and uses chroot")
    if platform.machine() != "x86_64":
        raise CheckError(f"this machine is {platform.machine()}; the check compares arm64 with x86_64")
    artifact = Path(args.artifact).resolve()
    if not (artifact / "quant.json").is_file():
        raise CheckError(f"{artifact}: not an artifact folder (no quant.json)")
    cpus = list(args.qemu_cpus)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    image = Path(args.image).resolve() if args.image else default_image(artifact, out)
    if not image.is_file():
        raise CheckError(f"{image}: no such image")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unmount the root's /proc when stopped
    sys.path.insert(0, str(REPO))
    run_features(artifact, image, out / "x86_64", args.graphs)
    install_host_tools()
    root = (args.cache / "arm64-root").resolve()
    build_root(root, args.suite, args.mirror)
    python = install_wheels(root)
    inside_artifact, inside_image = copy_project(root, artifact, image)
    with MountedProc(root):
        for cpu in cpus:
            inside_out = INSIDE / "work" / side_name(cpu)
            try:
                chroot(root, str(python), str(INSIDE / "src" / "scripts" / "arm_check.py"), "--inside",
                       str(inside_artifact), str(inside_image), str(inside_out), *args.graphs,
                       env={"PYTHONPATH": str(INSIDE / "src"), "QEMU_CPU": cpu})
            except subprocess.CalledProcessError as exc:
                raise CheckError(f"the arm64 run under QEMU_CPU={cpu} failed ({exc.returncode})") from None
            side = out / side_name(cpu)
            shutil.rmtree(side, ignore_errors=True)
            shutil.copytree(root / inside_out.relative_to("/"), side, ignore=shutil.ignore_patterns("*.log"))
            log = root / inside_out.relative_to("/") / "qemu_in_asm.log"
            (side / "int8_instructions.json").write_text(json.dumps(int8_instructions(log)))
            log.unlink()
    return report(artifact, image, out, cpus, args.min_cosine)


def report(artifact: Path, image: Path, out: Path, cpus: list[str], min_cosine: float) -> int:
    import numpy as np

    x86_env = json.loads((out / "x86_64" / "env.json").read_text())
    fingerprint = json.loads((artifact / "quant.json").read_text()).get("fingerprint", "")
    print(f"\nartifact {artifact} ({fingerprint}), image {image.name}")
    print(f"x86_64: {x86_env['proc_cpuinfo']['description']}; onnxruntime {x86_env['onnxruntime']}; "
          f"`spatialq features` ran {x86_env['auto_graph']}")
    spread = None
    if (out / "x86_64" / "graph_qdq.npz").is_file():  # the same W4A8 model through x86's other kernels
        spread = agreement(out / "x86_64" / "graph_qdq.npz", out / "x86_64" / "features.npz")
        print(f"x86_64 alone, model.onnx (QDQ) against model_cpu.onnx: 1 - patch cosine {1 - spread['patch_cosine_mean']:.1e} "
              f"(worst patch {1 - spread['patch_cosine_min']:.1e}): how far float rounding alone moves this artifact")
    rows, results = [], {}
    for cpu in cpus:
        side = out / side_name(cpu)
        env = json.loads((side / "env.json").read_text())
        ran = json.loads((side / "int8_instructions.json").read_text())
        cpuinfo_failed = any("cpuinfo_initialize failed" in m or "Failed to initialize" in m
                             for m in env["ort_messages"])
        print(f"aarch64 under QEMU_CPU={cpu} (qemu's model of a CPU, not a real core): the aux vector offers "
              f"{' '.join(env['hwcaps']) or 'no INT8 features'}; /proc/cpuinfo there is the host's "
              f"({env['proc_cpuinfo']['model'] or 'no model'}: qemu-user 7.2 passes it through)"
              + ("; ORT's cpuinfo library did not start (no /sys in the root)" if cpuinfo_failed else "")
              + f"; `spatialq features` ran {env['auto_graph']}, reaching INT8 instructions at "
              + ", ".join(f"{count} {name}" for name, count in ran.items()) + " code addresses")
        names = ["features"] + [f"graph_{g}" for g in env["graphs"]]
        results[cpu] = {"hwcaps": env["hwcaps"], "auto_graph": env["auto_graph"], "ort_messages": env["ort_messages"],
                        "int8_instructions": ran,
                        **{n: agreement(out / "x86_64" / f"{n}.npz", side / f"{n}.npz") for n in names}}
        for n in names:
            r = results[cpu][n]
            first = np.load(out / side_name(cpus[0]) / f"{n}.npz")["patch_tokens"]
            r["same_bits_as_" + cpus[0]] = bool(np.array_equal(np.load(side / f"{n}.npz")["patch_tokens"], first))
            rows.append(f"| {cpu} | {n.replace('graph_', 'graph ')} | {1 - r['patch_cosine_mean']:.1e} | "
                        f"{1 - r['patch_cosine_min']:.1e} | {1 - r['cls_cosine']:.1e} | {r['max_abs_err_rel']:.1e} | "
                        f"{'yes' if r['bit_identical'] else 'no'} | {'yes' if r['same_bits_as_' + cpus[0]] else 'no'} |")
    print(f"\n| QEMU_CPU | output | 1 - patch cosine (mean) | 1 - patch cosine (worst patch) | 1 - CLS cosine | "
          f"max abs err / max abs x86 | same bits as x86 | same bits as {cpus[0]} |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    failed = [cpu for cpu in cpus if results[cpu]["features"]["patch_cosine_min"] < min_cosine]
    (out / "agreement.json").write_text(json.dumps(
        {"artifact": str(artifact), "fingerprint": fingerprint, "image": str(image), "x86_64": x86_env,
         "x86_qdq_vs_cpu_graph": spread, "aarch64": results, "min_cosine": min_cosine, "passed": not failed},
        indent=1))
    print(f"\n{'FAIL' if failed else 'PASS'}: `spatialq features` patch cosine to x86 >= {min_cosine} on every patch"
          + (f"; not met under {', '.join(failed)}" if failed else f" under {', '.join(cpus)}")
          + f" (wrote {out / 'agreement.json'})")
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
