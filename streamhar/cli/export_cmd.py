"""`streamhar export BUNDLE --out MODEL.shm`: the integer network every runtime executes."""
from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("export", help="export a bundle to an integer-only network file (.shm)")
    p.add_argument("bundle", help="bundle file or bundled:NAME")
    p.add_argument("--out", required=True, type=Path, help="the .shm file to write (docs/FORMAT.md)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from streamhar.inference import export_bundle, load_shm, save_shm
    from streamhar.models.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    model = export_bundle(bundle)
    save_shm(model, args.out)
    load_shm(args.out)                      # read back: the file on disk is the one that validates
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size:,} bytes): {len(model.conv)} ternary conv layers + int8 FC, "
          f"widths {', '.join(str(w) for w in model.widths)}, "
          f"{model.arch['in_channels']}×{model.arch['window']} int8 input, {model.arch['n_classes']} classes")
    return 0
