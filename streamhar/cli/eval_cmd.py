"""`streamhar eval BUNDLE...`: metrics on the validation subjects (or any subjects), per width."""
from __future__ import annotations

import json
from pathlib import Path

from streamhar.cli.main import add_data_dir_option
from streamhar.datasets.paths import resolve_data_dir
from streamhar.errors import UsageError


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate bundles: accuracy, macro-/weighted-F1, per class, confusion",
                       description="Evaluate one or more bundles on the same recordings; several bundles "
                                   "(e.g. fp32 and ternary of one architecture) are printed side by side.")
    p.add_argument("bundles", nargs="+", help="bundle file or bundled:NAME")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--split", default="validation", help="split name (default: validation)")
    group.add_argument("--subjects", help="comma-separated subjects or recording ids found in the data folder")
    p.add_argument("--width", type=float, help="only this width (default: every trained width)")
    p.add_argument("--png", type=Path, help="write the confusion matrix of the widest evaluated width here")
    p.add_argument("--json", action="store_true", help="print all metrics as JSON")
    p.add_argument("--cascade", action="store_true",
                   help="also evaluate the adaptive cascade (integer engine) at the model's stored threshold")
    p.add_argument("--threshold", type=int, help="with --cascade: this integer margin threshold instead")
    p.add_argument("--predictions", type=Path, metavar="PATH",
                   help="with --cascade: write one JSON line per window (what `streamhar run --jsonl` writes)")
    add_data_dir_option(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from streamhar.evaluation.evaluate import evaluate
    from streamhar.evaluation.plots import confusion_png
    from streamhar.models.bundle import load_bundle

    data_dir = resolve_data_dir(args.data_dir)
    selector = args.subjects or args.split
    results = []
    for name in args.bundles:
        bundle = load_bundle(name)
        widths = [args.width] if args.width is not None else None
        if args.width is not None:
            bundle.model.width_index(args.width)        # a clear error for an untrained width
        results.append(evaluate(bundle, data_dir, selector, widths))
    cascades = []
    if args.cascade or args.predictions or args.threshold is not None:
        if not args.cascade:
            raise UsageError("--threshold and --predictions need --cascade")
        from streamhar.evaluation.evaluate import evaluate_cascade
        for name in args.bundles:
            metrics, rows = evaluate_cascade(load_bundle(name), data_dir, selector, args.threshold)
            cascades.append(metrics)
        if args.predictions:
            with open(args.predictions, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        for r, c in zip(results, cascades):
            r["cascade"] = c
    if args.png:
        r = results[-1]
        width, metrics = list(r["widths"].items())[-1]
        names = [c["class"] for c in metrics["window"]["per_class"]]
        confusion_png(metrics["window"]["confusion"], names, args.png,
                      f"{Path(r['bundle']).name} — {r['dataset']} {selector}, width {width}, windows")
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
        return 0
    for r in results:
        print(format_result(r))
        if "cascade" in r:
            c = r["cascade"]
            print(f"  cascade (widths {c['small']} → {c['full']}, threshold {c['threshold']}): {c['windows']:,} windows, "
                  f"accuracy {c['accuracy']:.4f}, macro-F1 {c['macro_f1']:.4f}, escalated "
                  f"{c['escalation_rate'] * 100:.1f} %, {c['macs_per_window']:,.0f} MACs/window")
    if args.predictions:
        print(f"per-window predictions written to {args.predictions}")
    if args.png:
        print(f"confusion matrix written to {args.png}")
    return 0


def format_result(r: dict) -> str:
    lines = [f"{r['bundle']} on {r['dataset']} {r['selector']} (subjects {', '.join(r['subjects'])}; "
             f"{r['recordings']} recordings; window {r['window']}, stride {r['stride']})",
             f"  {'width':>6} {'level':<7} {'n':>8} {'accuracy':>9} {'macro-F1':>9} {'weighted-F1':>12} "
             f"{'bal.acc':>8} {'MACs':>10} {'weight B':>9}"]
    for width, m in r["widths"].items():
        for level in ("window", "sample"):
            s = m[level]
            lines.append(f"  {width:>6} {level:<7} {s['windows']:>8,} {s['accuracy']:>9.4f} {s['macro_f1']:>9.4f} "
                         f"{s['weighted_f1']:>12.4f} {s['balanced_accuracy']:>8.4f} "
                         f"{m.get('macs', 0):>10,} {m.get('weight_bytes', 0):>9,}")
    width, m = list(r["widths"].items())[-1]
    lines.append(f"  per class (width {width}, windows):")
    for c in m["window"]["per_class"]:
        lines.append(f"    {c['class'][:40]:<40} P {c['precision']:.3f}  R {c['recall']:.3f}  "
                     f"F1 {c['f1']:.3f}  n {c['support']:>6,}")
    lines.append("  confusion (rows true, columns predicted):")
    for i, row in enumerate(m["window"]["confusion"]):
        lines.append(f"    {i:>2} " + " ".join(f"{v:>4}" for v in row))
    return "\n".join(lines)
