"""`streamhar stage KIND --config FILE`: one pipeline stage alone (spread over machines, scaled out)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("stage", help="run one pipeline stage alone (source, window, infer, sink)",
                       description="Run one stage of the pipeline described by a pipeline file; endpoints "
                                   "not named in the file default to tcp://127.0.0.1:5551-5556. Start several "
                                   "`infer` stages (--index 0, 1, …) to share the windows (PUSH/PULL).")
    p.add_argument("kind", choices=("source", "window", "infer", "sink"))
    p.add_argument("--config", metavar="FILE", help="pipeline file (TOML, or the JSON `streamhar run` writes)")
    p.add_argument("--index", type=int, default=0, help="which source (sources) or worker number (infer)")
    p.add_argument("--supervised", action="store_true", help=argparse_hidden())
    p.set_defaults(func=cmd_stage)


def argparse_hidden():
    import argparse
    return argparse.SUPPRESS


def cmd_stage(args) -> int:
    from streamhar.errors import UsageError
    from streamhar.pipeline.config import load_config
    from streamhar.pipeline.stages import stage_main

    cfg = load_config(args.config)
    if not args.supervised:
        cfg.with_tcp_defaults()
    cfg.validate()
    if args.kind == "source" and not 0 <= args.index < len(cfg.sources):
        raise UsageError(f"--index {args.index}: the pipeline file has {len(cfg.sources)} source(s)")
    if cfg.bundle == "auto":
        from streamhar.pipeline.defaults import resolve_bundle
        cfg.bundle = resolve_bundle(cfg.sources[0].spec, cfg.bundle)
    return stage_main(args.kind, cfg, args.supervised, args.index)
