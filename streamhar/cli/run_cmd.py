"""`streamhar run`: the whole pipeline — sources, windowing, adaptive inference, sinks — as processes."""
from __future__ import annotations

import json
from pathlib import Path

from streamhar.cli.main import add_data_dir_option


def register(sub) -> None:
    p = sub.add_parser("run", help="run the streaming pipeline (source → window → infer → sinks) over ZeroMQ",
                       description="Run every stage as a child process connected by ZeroMQ, with a live view "
                                   "and an exit summary. Options override the pipeline file (--config).")
    p.add_argument("--source", action="append", metavar="SPEC",
                   help="replay:NAME[:SELECTOR] (repeatable: several sources are aligned by timestamp); "
                        "default: a data set that is present")
    p.add_argument("--config", metavar="FILE", help="pipeline file (TOML); every field has a default")
    p.add_argument("--bundle", help="model bundle (default: the bundled model of the source's data set)")
    p.add_argument("--speed", help="replay speed: multiple of real time or 'max' (default 1)")
    p.add_argument("--mode", choices=("lossless", "bounded"),
                   help="flow control (default: lossless for replays, bounded for live sources)")
    p.add_argument("--workers", type=int, help="inference workers (default 1)")
    p.add_argument("--threshold", help="cascade threshold: integer logit margin, probability margin like 0.3, "
                                       "'never' or 'always' (default: the model's stored one)")
    p.add_argument("--engine", choices=("auto", "c", "numpy"), help="integer engine (default auto)")
    p.add_argument("--duration", type=float, help="stop the sources after this many wall seconds")
    p.add_argument("--loop", action="store_true", help="replay the selection endlessly")
    p.add_argument("--jsonl", metavar="PATH", help="write one JSON line per window here")
    p.add_argument("--publish", metavar="ENDPOINT", help="publish predictions on a ZeroMQ PUB socket "
                                                         "(e.g. tcp://127.0.0.1:5557)")
    p.add_argument("--summary-json", metavar="PATH", help="write the exit summary as JSON here")
    p.add_argument("--realtime", action="store_true",
                   help="give sources, windowing and inference real-time (SCHED_FIFO) priority for a short "
                        "latency tail at real-time pace; needs root, CAP_SYS_NICE or an rtprio limit")
    p.add_argument("--idle-poll", action="store_true",
                   help="with --realtime (implied): keep the latency core out of idle with a lowest-priority "
                        "spinner, for machines (VMs) where waking an idle core takes milliseconds; costs that "
                        "core's idle time")
    p.add_argument("--no-view", action="store_true", help="no live view, only the summary")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_data_dir_option(p)
    p.set_defaults(func=cmd_run)


def build_config(args):
    from streamhar.pipeline.config import SourceConfig, load_config, parse_speed
    from streamhar.pipeline.defaults import (check_replay_ready, default_source, match_sources_to_bundle,
                                             resolve_bundle)

    cfg = load_config(args.config)
    if args.source:
        cfg.sources = [SourceConfig(spec=s) for s in args.source]
    if args.data_dir:
        cfg.data_dir = str(Path(args.data_dir).resolve())
    note = ""
    if not cfg.sources:
        spec, note = default_source(cfg.data_dir)
        cfg.sources = [SourceConfig(spec=spec)]
    for key in ("bundle", "mode", "workers", "threshold", "engine"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.speed is not None:
        cfg.speed = parse_speed(args.speed, "--speed")
    if args.duration is not None:
        cfg.duration = args.duration
    if args.loop:
        cfg.loop = True
    if args.realtime or args.idle_poll:
        cfg.realtime = True
    if args.idle_poll:
        cfg.idle_poll = True
    for key in ("jsonl", "publish", "summary_json"):
        if getattr(args, key):
            setattr(cfg.sink, key, getattr(args, key))
    if args.no_view:
        cfg.sink.view = False
    if cfg.sink.jsonl:
        cfg.sink.jsonl = str(Path(cfg.sink.jsonl).resolve())
    if not cfg.data_dir and any(s.spec.startswith("replay:") for s in cfg.sources):
        from streamhar.datasets.paths import resolve_data_dir
        cfg.data_dir = str(resolve_data_dir(None).resolve())
    check_replay_ready(cfg.sources[0].spec, cfg.bundle, cfg.data_dir)
    cfg.bundle = resolve_bundle(cfg.sources[0].spec, cfg.bundle, [s.spec for s in cfg.sources])
    match_sources_to_bundle(cfg)
    return cfg.validate(), note


def cmd_run(args) -> int:
    import sys

    from streamhar.pipeline.summary import format_summary
    from streamhar.pipeline.supervisor import run_pipeline
    from streamhar.sinks.live_view import LiveView

    cfg, note = build_config(args)
    if note:
        print(f"streamhar run: no --source given: {cfg.sources[0].spec} ({note})", file=sys.stderr)
    speed = "max" if cfg.speed is None else f"{cfg.speed:g}×"
    title = f"{' + '.join(s.name for s in cfg.sources)} → {cfg.bundle} ({cfg.mode}, {speed})"
    view = LiveView(enabled=cfg.sink.view)
    rc, summary = run_pipeline(cfg, title=title, view=view,
                               on_started=lambda sup: print("streamhar run: stages " + ", ".join(
                                   f"{n} (pid {p})" for n, p in sup.pids().items()), file=sys.stderr, flush=True))
    if cfg.sink.summary_json:
        Path(cfg.sink.summary_json).write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return rc
