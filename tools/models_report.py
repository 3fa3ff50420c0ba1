#!/usr/bin/env python3
"""Tables for docs/MODELS.md: architecture, size, cost and validation metrics of bundles.

    python tools/models_report.py dsads=bundled:dsads usc-had=bundled:usc-had \
        --baseline dsads=runs/dsads-fp32.safetensors --baseline usc-had=runs/usc-fp32.safetensors \
        --json docs/models.json

Prints Markdown on stdout; `--json` also writes the metrics that `streamhar eval` must reproduce
(tests/test_bundled.py compares them, ±0.5 point).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from streamhar.datasets.paths import resolve_data_dir
from streamhar.evaluation.evaluate import evaluate
from streamhar.models.bundle import load_bundle
from streamhar.models.cost import layer_shapes


def describe_arch(bundle) -> str:
    c = bundle.config
    blocks = ", ".join(f"{ch}@k{k}/p{p}" for ch, k, p in zip(c.channels, c.kernels, c.pools))
    return (f"{c.fusion} fusion, input {c.in_channels}×{c.window} int8, blocks [{blocks}] "
            f"(conv {c.weight_quant}, act {c.act_quant}), GAP, FC {c.fc_weight_quant} → {c.n_classes}")


def zero_fraction(bundle) -> float:
    """Fraction of zero codes over all conv weights (full width); NaN for fp32 weights."""
    if bundle.config.weight_quant == "fp32":
        return float("nan")
    zeros = total = 0
    for name, module in bundle.model.named_modules():
        if hasattr(module, "quantizer") and hasattr(module, "weight") and ".conv" in name:
            codes, _ = module.quantizer.codes(module.weight.detach())
            zeros += int((codes == 0).sum())
            total += codes.numel()
    return zeros / total if total else 0.0


def recipe(bundle) -> str:
    t = bundle.meta["training"]
    parts = [f"lr schedule {t.get('schedule', 'plateau')}"]
    parts.append(f"in-place distillation α = {t['distill']:g}, T = {t['temperature']:g}" if t.get("distill")
                 else "no distillation")
    return ", ".join(parts)


def cascade_point(bundle) -> str:
    c = bundle.meta.get("cascade")
    if not c:
        return "no default cascade threshold"
    return (f"default cascade threshold {c['threshold']} (width {c['small']} first, chosen on {c['chosen_on']}): "
            f"macro-F1 {c['macro_f1']:.4f} vs {c['full_macro_f1']:.4f} full, {c['escalation_rate']:.1%} escalated, "
            f"{c['cost_fraction']:.1%} of the full width's MACs")


def params(bundle) -> int:
    return sum(l["weights"] for l in layer_shapes(bundle.config, 1.0))


def rows(name: str, bundle, result: dict, label: str) -> list[str]:
    out = []
    for width, m in result["widths"].items():
        w = m["window"]
        out.append(f"| {name} | {label} | {width} | {m.get('weight_bytes', 0):,} | {m.get('macs', 0):,} | "
                   f"{w['accuracy']:.4f} | {w['macro_f1']:.4f} | {w['weighted_f1']:.4f} | "
                   f"{m['sample']['macro_f1']:.4f} |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", help="NAME=BUNDLE")
    parser.add_argument("--baseline", action="append", default=[], help="NAME=BUNDLE (fp32, same shape)")
    parser.add_argument("--json", type=Path, help="write the metrics here too")
    parser.add_argument("--data-dir", default=os.environ.get("STREAMHAR_DATA"))
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data_dir)
    baselines = dict(b.split("=", 1) for b in args.baseline)
    table = ["| model | weights | width | weight bytes | MACs/window | accuracy | macro-F1 | weighted-F1 | sample macro-F1 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    record = {}
    for spec in args.bundles:
        name, path = spec.split("=", 1)
        bundle = load_bundle(path)
        result = evaluate(bundle, data_dir, "validation")
        record[name] = {"bundle": path, "widths": {w: {k: m["window"][k] for k in ("accuracy", "macro_f1", "weighted_f1")}
                                                  for w, m in result["widths"].items()}}
        print(f"**{name}** (`{path}`): {describe_arch(bundle)}; {params(bundle):,} weights at full width, "
              f"{zero_fraction(bundle):.1%} of conv weight codes zero; "
              f"validation subjects {', '.join(result['subjects'])}, window {result['window']}, "
              f"stride {result['stride']}; trained {bundle.meta['training']['epochs_run']} epochs "
              f"(best {bundle.meta['training']['best_epoch']}), {bundle.meta['training']['seconds']:.0f} s; "
              f"{recipe(bundle)}; {cascade_point(bundle)}.\n",
              file=sys.stdout)
        table += rows(name, bundle, result, bundle.config.weight_quant.split(":")[0])
        if name in baselines:
            base = load_bundle(baselines[name])
            table += rows(name, base, evaluate(base, data_dir, "validation"), base.config.weight_quant.split(":")[0])
    print("\n".join(table))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
