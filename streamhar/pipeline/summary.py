"""The exit summary of `streamhar run`: per stage counts, drops and gaps, throughput, latency, accuracy.

Throughput is measured end to end: from the first chunk leaving a source to the last prediction
reaching the sink (both `time.monotonic`, one clock on one machine). Latency per window runs from
the source sending the chunk that completed the window to the inference stage sending its
prediction.
"""
from __future__ import annotations

from streamhar.pipeline.supervisor import device_radio, stage_drops


def build_summary(sup, wall_s: float, wakeup: dict | None = None) -> dict:
    stages = {}
    for name in sup.procs:
        rep = sup.reports.get(name, {})
        stats = {k: v for k, v in (rep.get("stats") or {}).items() if k != "snapshot"}
        stages[name] = {"state": rep.get("state", "never reported"), "exit": sup.procs[name].returncode,
                        "scheduling": rep.get("scheduling"), "gc_frozen": rep.get("gc_frozen"),
                        **stage_drops(name, stats), "stats": stats}
    src = [stages[n]["stats"] for n in stages if n.startswith("source")]
    sink = stages.get("sink", {}).get("stats", {})
    samples = sum(int(s.get("samples", 0)) for s in src)
    stream_s = max((float(s.get("stream_s", 0.0)) for s in src), default=0.0)
    firsts = [s["first_sent"] for s in src if s.get("first_sent")]
    span = (sink["last_recv"] - min(firsts)) if firsts and sink.get("last_recv") else None
    windows = int(sink.get("windows", 0))
    result = sink.get("summary") or {}
    out = {
        "ok": sup.failure is None and not sup.interrupts and bool(sink.get("complete")),
        "mode": sup.cfg.mode, "speed": sup.cfg.speed, "bundle": sup.cfg.bundle, "workers": sup.cfg.workers,
        "realtime": sup.cfg.realtime,
        "wakeup": wakeup,                           # pipeline/wakeup.py: what kept the latency core quick to wake
        "sources": [s.name for s in sup.cfg.sources],
        "samples": samples, "stream_seconds": round(stream_s, 3), "windows": windows,
        "wall_seconds": round(wall_s, 3),
        "throughput": None if not span or span <= 0 else {
            "seconds": round(span, 4), "samples_per_s": round(samples / span, 1),
            "windows_per_s": round(windows / span, 1), "realtime_factor": round(stream_s / span, 2)},
        "latency_ms": result.get("latency_ms"),
        "dropped": sum(s["dropped"] for s in stages.values()),
        "gaps": sum(s["gaps"] for s in stages.values()),
        "windows_lost": sum(s.get("windows_lost", 0) for s in stages.values()),
        "metrics": {k: result.get(k) for k in ("accuracy", "macro_f1", "weighted_f1", "escalation_rate",
                                                 "macs_per_window", "labelled") if k in result},
        "per_class": result.get("per_class"),
        "threshold": sink.get("threshold"),
        "device_tier": _device_tier(src, result.get("device")),
        "interrupted": bool(sup.interrupts),
        "failure": sup.failure,
        "control_events": sup.events,
        "stages": stages,
    }
    return out


def _device_tier(sources: list[dict], device: dict | None) -> dict | None:
    """The device-tier cascade's part: windows committed on the device vs escalated to the host
    (as the sink received them), the devices' thresholds in force at the end, their MACs, and the
    radio bytes against the SAMPLES stream they replaced."""
    dev = [s for s in sources if "device_windows" in s]
    if not dev:
        return None
    d = device or {}
    return {"windows": d.get("windows", 0), "committed": d.get("committed", 0), "escalated": d.get("escalated", 0),
            "escalation_rate": d.get("escalation_rate"), "device_macs_per_window": d.get("device_macs_per_window"),
            "thresholds": {s["stream"]: s.get("device_threshold") for s in dev},
            "default_threshold": dev[0].get("device_threshold_default"),
            "windows_lost_on_link": sum(int(s.get("windows_lost", 0)) for s in dev),
            "radio": device_radio(dev)}


def format_summary(s: dict) -> str:
    speed = "max" if s["speed"] is None else f"{s['speed']:g}×"
    lines = [f"{', '.join(s['sources'])} → {s['bundle']} ({s['mode']}, speed {speed}, "
             f"{s['workers']} inference worker{'s' if s['workers'] != 1 else ''}"
             f"{', realtime' if s.get('realtime') else ''})"]
    wake = s.get("wakeup")
    if wake:
        poll = wake.get("idle_poll")
        lines.append(f"  wake-up: cpu_dma_latency {wake.get('cpu_dma_latency', 'not asked for')}; idle poll "
                     + (f"on CPU {poll['cpu']} ({poll['scheduling'] or 'scheduling unknown'}, "
                        f"{poll['cpu_seconds']:,.1f} CPU s)" if poll else "off"))
    if s["failure"]:
        f = s["failure"]
        lines.append(f"  FAILED: stage {f['stage']} {f['how']}" + (f": {f['error']}" if f.get("error") else ""))
    elif s["interrupted"]:
        lines.append("  interrupted (Ctrl-C): the sources stopped early")
    lines.append(f"  {s['samples']:,} samples ({s['stream_seconds']:,.1f} s of data) → {s['windows']:,} windows")
    t = s["throughput"]
    if t:
        lines.append(f"  throughput: {t['samples_per_s']:,.0f} samples/s, {t['windows_per_s']:,.1f} windows/s, "
                     f"{t['realtime_factor']:,.1f}× real time ({t['seconds']:.2f} s end to end)")
    lat = s["latency_ms"]
    if lat:
        lines.append(f"  latency (source → prediction): p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms, "
                     f"p99 {lat['p99']:.2f} ms, max {lat['max']:.2f} ms")
    mt = s["metrics"]
    if mt.get("accuracy") is not None:
        lines.append(f"  accuracy {mt['accuracy']:.4f}, macro-F1 {mt['macro_f1']:.4f} over {mt['labelled']:,} "
                     f"labelled windows; escalated {mt['escalation_rate'] * 100:.1f} %, "
                     f"{mt['macs_per_window']:,.0f} MACs/window")
    dt = s.get("device_tier")
    if dt:
        thresholds = ", ".join(f"{v}" for v in dt["thresholds"].values())
        lines.append(f"  device tier: {dt['committed']:,} windows committed on the device, {dt['escalated']:,} "
                     f"escalated to the host's full width; device threshold {thresholds} "
                     f"(model default {dt['default_threshold']}); MACs/window: "
                     f"{s['metrics'].get('macs_per_window') or 0:,.0f} on the host, "
                     f"{dt['device_macs_per_window'] or 0:,.0f} on the device")
        r = dt["radio"]
        if r and r["samples_stream_bytes"]:
            word = "saved" if r["saved_bytes"] >= 0 else "cost"
            lines.append(f"  radio: {r['bytes']:,} bytes received vs ≈{r['samples_stream_bytes']:,} for the "
                         f"{r['samples_covered']:,} samples as SAMPLES: {word} {abs(r['saved_bytes']):,} bytes "
                         f"({abs(r['saved_fraction']) * 100:.1f} %)")
    lines.append(f"  dropped {s['dropped']:,}, sequence gaps {s['gaps']:,}, windows lost to data gaps "
                 f"{s['windows_lost']:,}")
    for name, st in s["stages"].items():
        counts = st["stats"]
        what = {"source": lambda c: f"{c.get('samples', 0):,} samples in {c.get('chunks', 0):,} chunks"
                                    + (f", {c['device_windows']:,} device windows ({c.get('device_uncertain', 0):,} "
                                       f"uncertain)" if "device_windows" in c else ""),
                "window": lambda c: f"{c.get('windows', 0):,} windows",
                "infer": lambda c: f"{c.get('windows', 0):,} windows, {c.get('escalated', 0):,} escalated, "
                                   f"engine {c.get('engine', '?')}",
                "sink": lambda c: f"{c.get('windows', 0):,} windows"}[name.split("-")[0]](counts)
        lines.append(f"    {name:<10} {st['state']:<8} {what}; dropped {st['dropped']:,}, gaps {st['gaps']:,}")
    if s["failure"] and s["failure"].get("traceback"):
        lines.append("  traceback of the failed stage:")
        lines.extend("    " + ln for ln in s["failure"]["traceback"].rstrip().splitlines())
    return "\n".join(lines)
