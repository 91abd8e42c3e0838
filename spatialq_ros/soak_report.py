"""The soak's verdict (each check passed or not, and why), written as soak.md, soak.json and rss.png (no ROS)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .banner import UNTRAINED_WARNING
from .viz.pictures import stamp_untrained, write_png

LIFECYCLE_WARMUP = 5  # cycles before the lifecycle baseline (at most half of them)


def checks(result: dict, max_growth_mb: float) -> dict:
    """name -> {"passed": bool, "detail": str}; a phase the soak never reached fails its check."""
    c, phases, rss = result["config"], result["phases"], result["rss"]
    out = {}
    long_run = [s for s in rss if s["phase"] == "long run" and s["frame"] >= c["warmup"]]
    if "long_run" in phases and long_run:
        mb = np.array([s["mb"] for s in long_run])
        growth = float(np.median(mb[-5:]) - np.median(mb[:5]))  # medians of 5 samples: one noisy sample is no trend
        out["rss_growth"] = {"passed": growth <= max_growth_mb, "growth_mb": round(growth, 2),
                             "highest_minus_warm_mb": round(float(mb.max() - mb[0]), 2),
                             "trend_mb_per_1000_frames": round(_trend(long_run, "frame") * 1000, 3),
                             "detail": f"RSS after the {c['warmup']}-frame warm-up {mb[0]:.1f} MB, at the end "
                                       f"{mb[-1]:.1f} MB: growth {growth:+.1f} MB (median of the last 5 samples minus "
                                       f"the first 5; bound {max_growth_mb:g}); highest {mb.max():.1f} MB; trend "
                                       f"{_trend(long_run, 'frame') * 1000:+.3f} MB per 1000 frames"}
    else:
        out["rss_growth"] = {"passed": False, "detail": "the long run did not finish"}
    cycle = phases.get("lifecycle")
    if cycle:
        # samples[0] before the first cycle, samples[k] after cycle k; the first cycles may raise RSS once (glibc
        # keeps a freed ONNX Runtime session's memory in the arena of the thread that freed it): a step, not a leak
        samples = [s for s in rss if s["phase"] == "lifecycle"]
        warm = min(LIFECYCLE_WARMUP, cycle["cycles"] // 2)
        settled = [dict(s, cycle=k) for k, s in enumerate(samples)][warm:]
        grew = settled[-1]["mb"] - settled[0]["mb"] if len(settled) < 3 else _trend(settled, "cycle") * (
            len(settled) - 1)
        ok = cycle["outputs"] >= cycle["frames"] and grew <= max_growth_mb
        out["lifecycle"] = {"passed": ok, "growth_mb": round(grew, 2), "step_mb": round(settled[0]["mb"] -
                                                                                       samples[0]["mb"], 2),
                            "detail": f"{cycle['cycles']} cycles ({cycle['transitions']} transitions) succeeded; "
                                      f"{cycle['outputs']} of {cycle['frames']} frames between them processed; RSS "
                                      f"{samples[0]['mb']:.1f} MB before, {settled[0]['mb']:.1f} after cycle {warm} "
                                      f"(one-time step), {samples[-1]['mb']:.1f} after the last: trend over cycles "
                                      f"{warm}-{cycle['cycles']} {grew:+.1f} MB (bound {max_growth_mb:g})"}
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


def _trend(samples: list[dict], x: str) -> float:
    """Least-squares MB per unit of `x` (0 with fewer than 3 samples)."""
    if len(samples) < 3:
        return 0.0
    return float(np.polyfit([s[x] for s in samples], [s["mb"] for s in samples], 1)[0])


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
    fig, (ax, cycles) = plt.subplots(1, 2, figsize=(10, 4), dpi=100, gridspec_kw={"width_ratios": [3, 1]},
                                     sharey=True)
    for phase, colour in (("start", "black"), ("long run", "tab:blue"), ("vanish", "tab:red"), ("after", "tab:green")):
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
    ax.set_title("long run, camera vanish, last frames" + ("" if report["trained"] else "  UNTRAINED"), fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    life = [s["mb"] for s in rss if s["phase"] == "lifecycle"]  # before the first cycle, then after each
    cycles.plot(range(len(life)), life, "o-", color="tab:orange", markersize=3, linewidth=1)
    cycles.set_xlabel("lifecycle cycles done")
    cycles.set_title("lifecycle cycles", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.9))  # room above for the UNTRAINED band
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
              "/diagnostics' windows (100 frames) fill",
              f"- frames resent after 5 s without output (lost on the way): {report['resent']}",
              "- peak RSS (VmHWM) of the node process: " + ("n/a (it had exited)" if report["peak_rss_mb"] is None
                                                         else f"{report['peak_rss_mb']:.1f} MB"), "",
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
