"""`streamhar data list | info | verify | fetch`."""
from __future__ import annotations

import json
import sys

from tqdm import tqdm

from streamhar.cli.main import add_data_dir_option
from streamhar.datasets import dataset_names, get_dataset
from streamhar.datasets.describe import describe
from streamhar.datasets.paths import resolve_data_dir
from streamhar.datasets.verify import verify


def register(sub) -> None:
    data = sub.add_parser("data", help="list, inspect, verify and fetch data sets")
    verbs = data.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("list", help="the data sets streamhar knows and whether they are present")
    add_data_dir_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_list)

    p = verbs.add_parser("info", help="subjects, recordings, channels, classes with counts")
    p.add_argument("name", choices=dataset_names())
    add_data_dir_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = verbs.add_parser("verify", help="check every file against the published SHA-256 list")
    p.add_argument("name", choices=dataset_names())
    add_data_dir_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_verify)

    p = verbs.add_parser("fetch", help="download the official archive into the data folder")
    p.add_argument("name", choices=dataset_names())
    add_data_dir_option(p)
    p.add_argument("--url", help="download from this mirror instead of the manifest's URL")
    p.add_argument("--sha256", help="expected SHA-256 of the archive (overrides the manifest)")
    p.add_argument("--force", action="store_true", help="download even if the data set is present")
    p.set_defaults(func=cmd_fetch)


def _progress(desc: str):
    return lambda items: tqdm(items, desc=desc, unit="rec", file=sys.stderr, disable=None, leave=False)


def cmd_list(args) -> int:
    data_dir = resolve_data_dir(args.data_dir, must_exist=False)
    rows = []
    for name in dataset_names():
        ds = get_dataset(name)
        root = data_dir / ds.folder
        rows.append({"name": name, "title": ds.title, "present": ds.present(root), "path": str(root),
                     "rate_hz": ds.rate, "channels": len(ds.channels), "classes": len(ds.class_names)})
    if args.json:
        print(json.dumps({"data_dir": str(data_dir), "datasets": rows}, indent=2))
        return 0
    print(f"data folder: {data_dir}")
    for r in rows:
        state = "present" if r["present"] else "absent "
        print(f"  {r['name']:<12} {state}  {r['rate_hz']:>5g} Hz  {r['channels']:>3} ch  "
              f"{r['classes']:>2} classes  {r['title']}")
    return 0


def cmd_info(args) -> int:
    ds = get_dataset(args.name)
    info = describe(ds, resolve_data_dir(args.data_dir), progress=_progress(f"reading {ds.name}"))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    hours = info["duration_s"] / 3600
    print(f"{info['title']}\n  folder     {info['root']}")
    print(f"  rate       {info['rate_hz']:g} Hz")
    print(f"  channels   {len(info['channels'])} in groups {', '.join(info['sensor_groups'])}")
    print(f"  subjects   {len(info['subjects'])}: " +
          ", ".join(f"{s['id']} ({s['recordings']})" for s in info["subjects"]))
    print("  splits     " + "; ".join(f"{k}: {', '.join(v)}" for k, v in info["splits"].items()))
    print(f"  recordings {info['recordings']}, {info['samples']:,} samples, {hours:.2f} h")
    if info["repairs"]:
        print("  repaired   " + ", ".join(f"{k}: {v:,}" for k, v in info["repairs"].items()))
    print("  classes")
    for c in info["classes"]:
        print(f"    {c['index']:>2} {c['name']:<48} {c['samples']:>9,} samples {c['duration_s'] / 60:>8.1f} min")
    return 0


def cmd_verify(args) -> int:
    ds = get_dataset(args.name)
    data_dir = resolve_data_dir(args.data_dir)
    bar = tqdm(desc=f"verifying {ds.name}", unit="file", file=sys.stderr, disable=None, leave=False)

    def tick(i: int, n: int) -> None:
        bar.total = n
        bar.update(1)

    report = verify(ds, data_dir, sizes=_manifest_sizes(ds.name), on_progress=tick)
    bar.close()
    if args.json:
        print(json.dumps({**report.__dict__, "passed": report.passed}, indent=2))
        return 0 if report.passed else 1
    for rel in report.missing:
        print(f"MISSING     {rel}")
    for rel, want, got in report.wrong_size:
        print(f"WRONG SIZE  {rel}: {got:,} bytes, expected {want:,}")
    for rel, want, got in report.wrong_hash:
        print(f"WRONG HASH  {rel}: sha256 {got}, expected {want}")
    for rel, err in report.unreadable:
        print(f"UNREADABLE  {rel}: {err}")
    verdict = "OK" if report.passed else "FAILED"
    how = "SHA-256" if report.method == "sha256" else "loading every recording"
    print(f"{ds.name}: {verdict} — {report.ok} of {report.checked} files good ({how}), {report.root}")
    return 0 if report.passed else 1


def _manifest_sizes(name: str) -> dict[str, int]:
    """Sizes the manifest records per file (relative to the data set folder), for a cheap first check."""
    from streamhar.datasets.manifest import load_manifest
    manifest = load_manifest(name)
    return {e.pattern: e.size for e in manifest.expected if e.size}


def cmd_fetch(args) -> int:
    from streamhar.datasets.fetch import fetch
    from streamhar.datasets.manifest import load_manifest
    data_dir = resolve_data_dir(args.data_dir, must_exist=False)
    data_dir.mkdir(parents=True, exist_ok=True)
    result = fetch(load_manifest(args.name), data_dir, url=args.url, sha256=args.sha256, force=args.force)
    if result.already_present:
        print(f"{args.name}: already present and complete in {result.path} (use --force to fetch again)")
    else:
        how = "resumed" if result.resumed else "downloaded"
        print(f"{args.name}: {how} {result.downloaded:,} bytes, sha256 {result.sha256}; "
              f"{result.unpacked} files unpacked into {result.path}")
    return 0
