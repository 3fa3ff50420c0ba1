"""`streamhar sweep BUNDLE`: the cascade's operating curve over escalation thresholds."""
from __future__ import annotations

import json
from pathlib import Path

from streamhar.cli.main import add_data_dir_option
from streamhar.datasets.paths import resolve_data_dir
from streamhar.errors import UsageError


def register(sub) -> None:
    p = sub.add_parser("sweep", help="accuracy / macro-F1 / escalation rate / cost of the cascade per threshold")
    p.add_argument("bundle", help="bundle file or bundled:NAME")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--split", default="validation")
    group.add_argument("--subjects", help="comma-separated subjects or recording ids")
    p.add_argument("--small", type=float, help="width run first (default: the narrowest)")
    p.add_argument("--full", type=float, help="width escalated to (default: 1.0)")
    p.add_argument("--png", type=Path, help="where to plot macro-F1 against mean MACs "
                   "(default: sweep-NAME.png in the current folder)")
    p.add_argument("--no-png", action="store_true", help="no plot")
    p.add_argument("--json", action="store_true")
    p.add_argument("--save-threshold", action="store_true",
                   help="store the suggested threshold in the bundle file as its default operating point")
    add_data_dir_option(p)
    p.set_defaults(func=cmd_sweep)


def sweep_bundle(bundle_name: str, data_dir: Path, selector: str, small=None, full=None) -> dict:
    from streamhar.inference import IntegerEngine, export_bundle
    from streamhar.inference.cascade import operating_curve
    from streamhar.models.bundle import load_bundle
    from streamhar.models.cost import macs
    from streamhar.models.data import bundle_split

    bundle = load_bundle(bundle_name)
    engine = IntegerEngine(export_bundle(bundle), name=bundle.path)
    small = small or bundle.config.widths[0]
    full = full or bundle.config.widths[-1]
    split = bundle_split(bundle, data_dir, selector)
    x = engine.quantize(split.windows.x)
    small_logits, full_logits = engine.run(x, small), engine.run(x, full)
    cost_small, cost_full = macs(bundle.config, small), macs(bundle.config, full)
    scale = engine.model.info.get("logit_scale")
    curve = operating_curve(small_logits, full_logits, split.windows.y, bundle.class_names, cost_small, cost_full)
    prob = operating_curve(small_logits, full_logits, split.windows.y, bundle.class_names, cost_small, cost_full,
                           margin="prob", logit_scale=scale)
    return {"bundle": bundle.path, "selector": selector, "windows": int(len(split.windows)),
            "small_width": small, "full_width": full, "macs_small": cost_small, "macs_full": cost_full,
            "logit_scale": scale, **curve,
            "prob_margin": {"suggested": prob["suggested"], "curve": prob["curve"]}}


def default_png(bundle: str) -> Path:
    """sweep-usc-had.png for bundled:usc-had or …/usc-had.safetensors."""
    return Path(f"sweep-{Path(bundle.split(':', 1)[-1]).stem}.png")


def cmd_sweep(args) -> int:
    result = sweep_bundle(args.bundle, resolve_data_dir(args.data_dir), args.subjects or args.split,
                             args.small, args.full)
    if args.save_threshold:
        from streamhar.inference import operating_point
        from streamhar.models.bundle import update_meta
        point = operating_point.entry(result, result["small_width"], result["full_width"], result["macs_full"],
                                      result["selector"], operating_point.TOLERANCE)
        if point is None:
            raise UsageError(f"{args.bundle}: no threshold keeps macro-F1 within 0.5 point of the full width "
                             f"on {result['selector']}; nothing saved")
        update_meta(args.bundle, {"cascade": point})
        result["saved"] = point
    if not args.no_png:
        args.png = args.png or default_png(args.bundle)
    else:
        args.png = None
    if args.png:
        plot_curve(result, args.png)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['bundle']} on {result['selector']} ({result['windows']:,} windows): width "
          f"{result['small_width']} first ({result['macs_small']:,} MACs), escalating to {result['full_width']} "
          f"({result['macs_full']:,} MACs) when the margin ≤ threshold (logit units 1/{result['logit_scale']})")
    print(f"  {'threshold':>10} {'accuracy':>9} {'macro-F1':>9} {'weighted-F1':>12} {'escalated':>10} {'mean MACs':>12} {'cost':>6}")
    curve = result["curve"]
    shown = curve[:: max(1, len(curve) // 25)] + [curve[-1]]
    for label, row in [("small only", result["small_only"])] + [(str(r["threshold"]), r) for r in shown] + \
            [("full only", result["full_only"])]:
        print(f"  {label:>10} {row['accuracy']:>9.4f} {row['macro_f1']:>9.4f} {row['weighted_f1']:>12.4f} "
              f"{row['escalation_rate']:>9.1%} {row['mean_macs']:>12,.0f} {row['mean_macs'] / result['macs_full']:>6.1%}")
    s = result["suggested"]
    if s:
        print(f"  cheapest threshold within 0.5 point of the full width's macro-F1: {s['threshold']} → "
              f"macro-F1 {s['macro_f1']:.4f}, {s['escalation_rate']:.1%} escalated, "
              f"{s['mean_macs'] / result['macs_full']:.1%} of the full width's MACs")
    p = result["prob_margin"]["suggested"]
    if p:
        print(f"  for comparison, on softmax-probability margins (Daghero's 100 log-spaced thresholds): "
              f"{p['threshold']:.4g} → macro-F1 {p['macro_f1']:.4f}, {p['escalation_rate']:.1%} escalated, "
              f"{p['mean_macs'] / result['macs_full']:.1%} of the full width's MACs")
    if args.png:
        print(f"plot written to {args.png}")
    if args.save_threshold:
        print(f"default threshold {result['saved']['threshold']} saved in {args.bundle}")
    return 0


def plot_curve(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["curve"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["mean_macs"] for r in curve], [r["macro_f1"] for r in curve], "-", color="tab:blue",
            label="cascade (integer-margin thresholds)")
    prob = result.get("prob_margin", {}).get("curve")
    if prob:
        ax.plot([r["mean_macs"] for r in prob], [r["macro_f1"] for r in prob], ":", color="tab:gray",
                label="cascade (probability-margin thresholds)")
    for key, marker, label in (("small_only", "s", f"width {result['small_width']} only"),
                               ("full_only", "D", f"width {result['full_width']} only")):
        ax.plot(result[key]["mean_macs"], result[key]["macro_f1"], marker, markersize=8, label=label)
    if result["suggested"]:
        s = result["suggested"]
        ax.plot(s["mean_macs"], s["macro_f1"], "*", markersize=12, color="tab:red",
                label=f"threshold {s['threshold']}")
    ax.set_xlabel("mean MACs per window")
    ax.set_ylabel("macro-F1")
    ax.set_title(f"{Path(result['bundle']).name}: cascade on {result['selector']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
