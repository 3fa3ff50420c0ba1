"""`streamhar demo`: the live wearable demo — wearables (or a microcontroller) → the full pipeline.

    streamhar demo                          # the wearables in wearables.toml (see docs/WEARABLES.md)
    streamhar demo --device "ble:movesense:Movesense 2245?at=hip"
    streamhar demo --simulate               # emulated hip IMU replaying USC-HAD subject 12 over BLE
    streamhar demo --simulate dsads         # five emulated IMUs (torso, arms, legs) replaying DSADS p6
    streamhar demo --serial /dev/ttyACM0    # a board running the sensor firmware (or QEMU's pty)

The bundle is the bundled model whose sensor placements the wearables cover (a hip IMU →
`bundled:usc-had`; T, RA, LA, RL, LL → `bundled:dsads`); channels are mapped by name and
converted to the model's units, other rates resampled — all in the window stage. The pipeline is
`streamhar run`'s, in bounded mode (a live source cannot be slowed down).

Simulation runs the real protocol stacks: each emulated wearable is a Bumble peripheral speaking
its vendor's GATT protocol, reached by bleak through the Bumble backend, streaming a recording at
its real rate. The emulator also tells the source which recorded sample each received one is
(out of band, never over the radio), so the demo can score itself: at the end it prints the live
accuracy beside the offline evaluation of the same recorded span.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from streamhar.cli.main import add_data_dir_option
from streamhar.errors import UsageError

# data set → its held-out-from-training (validation) subject and the emulated wearables replaying it
SIMULATIONS = {
    "usc-had": ("12", [("generic", "hip")]),
    "dsads": ("p6", [("generic", g) for g in ("T", "RA", "LA", "RL", "LL")]),
}
WEARABLES_FILE = "wearables.toml"


def register(sub) -> None:
    p = sub.add_parser("demo", help="live activity recognition from wearables (or --simulate, or --serial)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--simulate", nargs="?", const="usc-had", choices=sorted(SIMULATIONS), metavar="DATASET",
                   help="emulated wearables replaying a real recording over the real BLE stack "
                        f"({', '.join(sorted(SIMULATIONS))}; default usc-had)")
    p.add_argument("--serial", metavar="PORT", help="a microcontroller running the sensor firmware on this port")
    p.add_argument("--at", help="--serial: where the board is worn (channel prefix, e.g. hip)")
    p.add_argument("--device", action="append", metavar="SPEC",
                   help="a wearable, e.g. 'ble:polar:Polar H10 1A2B3C4D?at=chest' (repeatable); default: "
                        f"the [[wearables]] of ./{WEARABLES_FILE} or ~/.config/streamhar/{WEARABLES_FILE}")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--bundle", help="model bundle (default: the bundled model the wearables' placements fit)")
    p.add_argument("--threshold", help="cascade threshold (as for streamhar run)")
    p.add_argument("--no-view", action="store_true", help="no live view, only the summary")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--summary-json", metavar="PATH", help="write the summary as JSON here")
    add_data_dir_option(p)
    p.set_defaults(func=cmd_demo)


def simulated_specs(dataset: str) -> list[str]:
    subject, wearables = SIMULATIONS[dataset]
    return [f"ble:{profile}:SIM-{group}?at={group}&group={group}&simulate=replay:{dataset}:{subject}"
            for profile, group in wearables]


def configured_specs() -> list[str]:
    import tomllib

    for path in (Path(WEARABLES_FILE), Path.home() / ".config" / "streamhar" / WEARABLES_FILE):
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as e:
                raise UsageError(f"{path}: not valid TOML: {e}") from None
            items = data.get("wearables", [])
            specs = [w.get("spec") if isinstance(w, dict) else w for w in items]
            if not specs or not all(isinstance(s, str) and s.startswith(("ble:", "serial:")) for s in specs):
                raise UsageError(f"{path}: expected [[wearables]] tables with spec = \"ble:PROFILE:ADDRESS?at=…\"")
            return specs
    return []


def sources_for(args) -> list[str]:
    if sum(bool(x) for x in (args.simulate, args.serial, args.device)) > 1:
        raise UsageError("demo: give one of --simulate, --serial, --device")
    if args.simulate:
        return simulated_specs(args.simulate)
    if args.serial:
        return [f"serial:{args.serial}" + (f"?at={args.at}" if args.at else "")]
    specs = args.device or configured_specs()
    if not specs:
        raise UsageError(f"demo: no wearable configured. Find yours with `streamhar devices scan`, then list them "
                         f"in ./{WEARABLES_FILE} ([[wearables]] spec = \"ble:PROFILE:ADDRESS?at=hip\") or pass "
                         "--device; or try `streamhar demo --simulate`")
    return specs


def offline_accuracy(summary: dict, dataset: str, data_dir, threshold=None) -> dict | None:
    """The offline evaluation (`streamhar eval`'s windows and cascade) of the recorded span the
    emulators streamed: N samples of the selection from the one the first source received first
    (the emulated sensor runs from power-on, so streaming starts where it is), N = what it sent."""
    import dataclasses

    import numpy as np

    from streamhar.datasets import get_dataset
    from streamhar.inference import ops
    from streamhar.datasets.paths import resolve_data_dir
    from streamhar.inference.stage import InferStage
    from streamhar.models.bundle import load_bundle
    from streamhar.windowing.sliding import make_windows

    src = next((s for name, s in summary.get("stages", {}).items() if name.startswith("source")), None)
    stats = src.get("stats", {}) if src else {}
    n, skip = int(stats.get("samples", 0)), stats.get("sim_first_sample")
    if n <= 0 or skip is None:
        return None
    subject, _ = SIMULATIONS[dataset]
    recs = get_dataset(dataset).load_selection(resolve_data_dir(data_dir or None), subject)
    span, left, skip = [], n, int(skip)
    for r in recs * (1 + (skip + n) // max(1, sum(map(len, recs)))):   # the emulator loops the selection
        a = min(skip, len(r))
        skip -= a
        b = min(len(r), a + left)
        if b > a:
            span.append(dataclasses.replace(r, timestamps=r.timestamps[a:b], samples=r.samples[a:b],
                                            labels=r.labels[a:b]))
            left -= b - a
        if left <= 0:
            break
    bundle = load_bundle(summary["bundle"])
    w = make_windows(span, bundle.meta["window"], bundle.meta["stride"])
    if not len(w):
        return None
    stage = InferStage.from_bundle(summary["bundle"], threshold=threshold)
    pred = stage.cascade.process(ops.quantize_input(bundle.normalize(w.x), stage.step)).classes
    return {"windows": int(len(w)), "accuracy": float(np.mean(pred == w.y)), "samples": n,
            "first_sample": int(stats["sim_first_sample"])}


def cmd_demo(args) -> int:
    from streamhar.pipeline.config import PipelineConfig, SourceConfig
    from streamhar.pipeline.defaults import resolve_bundle
    from streamhar.pipeline.summary import format_summary
    from streamhar.pipeline.supervisor import run_pipeline
    from streamhar.sinks.live_view import LiveView

    specs = sources_for(args)
    cfg = PipelineConfig(sources=[SourceConfig(spec=s) for s in specs], mode="bounded",
                         duration=args.duration or 0.0)
    if args.data_dir:
        cfg.data_dir = str(Path(args.data_dir).resolve())
    if args.threshold:
        cfg.threshold = args.threshold
    cfg.sink.view = not args.no_view
    cfg.bundle = resolve_bundle(specs[0], args.bundle or "auto", specs)
    cfg.validate()
    kind = f"simulated {args.simulate}" if args.simulate else ("serial" if args.serial else "BLE")
    title = f"demo ({kind}): {len(specs)} wearable{'s' if len(specs) > 1 else ''} → {cfg.bundle}"
    print(f"streamhar demo: {title}", file=sys.stderr, flush=True)
    rc, summary = run_pipeline(cfg, title=title, view=LiveView(enabled=cfg.sink.view))
    if args.simulate and rc == 0:
        summary["offline"] = offline_accuracy(summary, args.simulate, cfg.data_dir, args.threshold)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2, default=str))
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_summary(summary))
        off = summary.get("offline")
        if off:
            live = summary.get("metrics", {}).get("accuracy")
            print(f"offline evaluation of the same recorded span: accuracy {off['accuracy']:.4f} over "
                  f"{off['windows']} windows" + (f" (live: {live:.4f})" if isinstance(live, float) else ""))
    return rc
