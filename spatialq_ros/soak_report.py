"""The soak's verdict (each check passed or not, and why), written as soak.md, soak.json and rss.png (no ROS)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .banner import UNTRAINED_WARNING
from .viz.pictures import stamp_untrained, write_png


def checks(result: dict, max_growth_mb: float) -> dict:
    """name -> {"passed": bool, "detail": str}; a phase the soak never reached fails its check."""
    c, phases, rss = result["config"], result["phases"], result["rss"]
    out = {}
    long_run = [s for s in rss if s["phase"] == "long run" and s["frame"] >= c["warmup"]]
    if "long_run" in phases and long_run:
        base = long_run[0]["mb"]
        growth = max(s["mb"] for s in long_run) - base
        frames = np.array([s["frame"] for s in long_run], float)
        slope = float(np.polyfit(frames, [s["mb"] for s in long_run], 1)[0]) * 1000 if len(long_run) > 2 else 0.0
        out["rss_growth"] = {"passed": growth <= max_growth_mb, "growth_mb": round(growth, 2),
                             "end_minus_warm_mb": round(long_run[-1]["mb"] - base, 2),
                             "slope_mb_per_1000_frames": round(slope, 3),
                             "detail": f"RSS after the {c['warmup']}-frame warm-up: {base:.1f} MB; highest later "
                                       f"{base + growth:.1f} MB (+{growth:.1f} MB, bound {max_growth_mb:g}); at the "
                                       f"end {long_run[-1]['mb']:.1f} MB; trend {slope:+.3f} MB per 1000 frames"}
    else:
        out["rss_growth"] = {"passed": False, "detail": "the long run did not finish"}
    cycle = phases.get("lifecycle")
    if cycle:
        grew = cycle["rss_after_mb"] - cycle["rss_before_mb"]
        ok = cycle["outputs"] >= cycle["frames"] and grew <= max_growth_mb
        out["lifecycle"] = {"passed": ok, "rss_change_mb": round(grew, 2),
                            "detail": f"{cycle['cycles']} cycles ({cycle['transitions']} transitions) succeeded; "
                                      f"{cycle['outputs']} of {cycle['frames']} frames between them processed; RSS "
                                      f"{cycle['rss_before_mb']:.1f} -> {cycle['rss_after_mb']:.1f} MB "
                                      f"({grew:+.1f}, bound {max_growth_mb:g})"}
    else:
        out["lifecycle"] = {"passed": False, "detail": "the lifecycle cycles did not finish"}
    vanish = phases.get("vanish")
    if vanish:
        ok = vanish["warnings"] > 0 and vanish["outputs_after_return"] >= vanish["frames_after_return"]
        first, last = vanish["first_warning"], vanish["last_warning"]
        out["camera_vanish"] = {"passed": ok, "detail": (
            f"camera gone {vanish['seconds']:g} s: {vanish['warnings']} WARN on /diagnostics, "
            + (f"first \"{first['message']}\" at {first['t_s']} s, last \"{last['message']}\" at {last['t_s']} s; "
               if first else "none; ")
            + f"OK {vanish['ok_after_return_s']} s after frames returned; {vanish['outputs_after_return']} of "
              f"{vanish['frames_after_return']} frames processed")}
    else:
        out["camera_vanish"] = {"passed": False, "detail": "the vanish phase did not finish"}
    after = phases.get("after")
    out["frames_after"] = ({"passed": after["outputs"] >= after["frames"],
                            "detail": f"{after['outputs']} of {after['frames']} final frames processed"}
                           if after else {"passed": False, "detail": "not reached"})
    crashed = result["failure"] or result["exit_code"] != 0
    out["no_crash"] = {"passed": not crashed, "detail": (
        f"stopped: {result['failure']}; " if result["failure"] else "every phase ran; ")
        + f"node process exit code {result['exit_code']} after SIGINT"}
    out["torch_not_loaded"] = {"passed": result["torch_loaded"] is False,
                               "detail": f"torch in the node process: {result['torch_loaded']}"}
    return out


def write_soak_report(result: dict, out: Path, max_growth_mb: float, trained: bool, inputs: dict) -> dict:
    report = {**result, "trained": trained, "inputs": inputs, "cpu": _cpu(), "max_growth_mb": max_growth_mb,
              "checks": checks(result, max_growth_mb)}
    report["passed"] = all(c["passed"] for c in report["checks"].values())
    _rss_picture(report, out / "rss.png")
    write_atomic(out / "soak.json", json.dumps(report, indent=2).encode())
    write_atomic(out / "soak.md", _markdown(report).encode())
    return report


def _cpu() -> str:
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        return f"{names[0]}, {len(names)} logical CPUs" if names else platform.processor()
    except OSError:
        return platform.processor()


def _rss_picture(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rss, c = report["rss"], report["config"]
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    for phase, colour in (("start", "black"), ("long run", "tab:blue"), ("lifecycle", "tab:orange"),
                          ("vanish", "tab:red"), ("after", "tab:green")):
        points = [s for s in rss if s["phase"] == phase]
        if points:
            ax.plot([s["frame"] for s in points], [s["mb"] for s in points], ".-" if phase == "long run" else "o",
                    color=colour, markersize=3, linewidth=1, label=phase)
    warm = next((s["mb"] for s in rss if s["phase"] == "long run" and s["frame"] >= c["warmup"]), None)
    ax.axvline(c["warmup"], color="grey", linestyle=":", linewidth=1, label=f"warm-up ({c['warmup']} frames)")
    if warm is not None:
        ax.axhspan(warm, warm + report["max_growth_mb"], color="tab:green", alpha=0.1,
                   label=f"allowed growth ({report['max_growth_mb']:g} MB)")
    ax.set_xlabel("frames sent")
    ax.set_ylabel("perception_node RSS (MB)")
    ax.set_title("soak: deploy-process RSS" + ("" if report["trained"] else "  UNTRAINED"))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    write_png(path, rgb if report["trained"] else stamp_untrained(rgb))


def _markdown(report: dict) -> str:
    c, phases = report["config"], report["phases"]
    lines = ["# spatialq soak", ""]
    if not report["trained"]:
        lines += [f"> **{UNTRAINED_WARNING}**", ""]
    lines += [f"**{'PASSED' if report['passed'] else 'FAILED'}** on {report['cpu']}.", "",
              "- inputs: " + ", ".join(f"{k} `{v}`" for k, v in report["inputs"].items()),
              f"- node: `{' '.join(report['node_command'])}` (its own process, fed over DDS in lockstep)",
              f"- warm-up: the first {c['warmup']} frames, before the RSS baseline: ONNX Runtime's arena, the "
              "malloc arenas of the node's worker threads and DDS's buffers grow to their working size, and "
              "/diagnostics' windows (100 frames) fill; growth is the highest RSS after it minus RSS at its end",
              f"- frames resent after 5 s without output (lost on the way): {report['resent']}",
              f"- peak RSS (VmHWM) of the node process: {report['peak_rss_mb']} MB", "",
              "| check | passed | what |", "| --- | --- | --- |"]
    lines += [f"| {name} | {'yes' if ch['passed'] else '**no**'} | {ch['detail']} |"
              for name, ch in report["checks"].items()]
    lines += ["", "![RSS over frames](rss.png)", ""]
    if "long_run" in phases:
        r = phases["long_run"]
        lines += [f"Long run: {r['frames']} frames in {r['wall_s']} s ({r['fps']} frames/s, lockstep, every head "
                  "on, frame cache off).", ""]
    if report["diagnostics"]:
        lines += ["## /diagnostics around the vanish (s from the camera's disappearance)", "",
                  "| t s | level | message |", "| --- | --- | --- |"]
        lines += [f"| {d['t_s']} | {d['level']} | {d['message']} |" for d in report["diagnostics"]]
        lines += [""]
    final = report["final_diagnostics"]
    if final:
        keys = ("level", "message", "received", "processed", "dropped", "bad_frames", "fps", "latency_p50_ms",
                "stage.backbone_p50_ms")
        lines += ["Last /diagnostics: " + ", ".join(f"{k} {final[k]}" for k in keys if k in final), ""]
    return "\n".join(lines)
