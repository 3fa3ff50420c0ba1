"""What `streamhar run` uses when the user names less: the source, the bundle.

Without `--source`: OPPORTUNITY when its recordings and a model trained on them exist (the
product's flagship replay), else the validation subjects of the first data set present (DSADS,
then USC-HAD). `bundle = "auto"`: the bundled model of the first source's data set. When the
OPPORTUNITY recordings or its model are missing, the error says which and how to get them.
"""
from __future__ import annotations

from pathlib import Path

from streamhar.datasets import get_dataset
from streamhar.datasets.paths import resolve_data_dir
from streamhar.errors import DataNotFound, UsageError
from streamhar.models.bundle import BundleError, resolve_bundle_path

FALLBACK_ORDER = ("dsads", "usc-had")


def bundled_for(dataset: str) -> str | None:
    try:
        resolve_bundle_path(f"bundled:{dataset}")
        return f"bundled:{dataset}"
    except BundleError:
        return None


def default_source(data_dir: str | None) -> tuple[str, str]:
    """(source spec, why it was chosen)."""
    root = resolve_data_dir(data_dir or None)
    opp = get_dataset("opportunity")
    opp_present = opp.present(root / opp.folder)
    if opp_present and bundled_for("opportunity"):
        return "replay:opportunity:validation", "OPPORTUNITY recordings and model found"
    why_not = ("OPPORTUNITY recordings found but no model trained on them" if opp_present
               else f"no OPPORTUNITY recordings in {root / opp.folder}")
    for name in FALLBACK_ORDER:
        ds = get_dataset(name)
        if ds.present(root / ds.folder):
            return f"replay:{name}:validation", f"{why_not}; replaying {ds.title} validation subjects"
    raise DataNotFound(f"no data set found in {root}: fetch one with `streamhar data fetch dsads` (or usc-had, "
                       "opportunity), or point --data-dir / $STREAMHAR_DATA at a folder holding one")


def check_replay_ready(spec: str, bundle: str, data_dir: str | None) -> None:
    """For replay:opportunity, say exactly what is missing (recordings, model) and how to get it."""
    if not spec.startswith("replay:opportunity"):
        return
    root = resolve_data_dir(data_dir or None, must_exist=False)
    opp = get_dataset("opportunity")
    missing = []
    if not (Path(root).is_dir() and opp.present(root / opp.folder)):
        missing.append(f"the OPPORTUNITY recordings (expected {opp.layout_hint(root / opp.folder)}; get them "
                       "with `streamhar data fetch opportunity`)")
    if bundle == "auto" and not bundled_for("opportunity"):
        missing.append("a model trained on OPPORTUNITY (none is bundled: train one with `streamhar train "
                       "--dataset opportunity --out opportunity.safetensors`, then pass --bundle "
                       "opportunity.safetensors)")
    if missing:
        raise UsageError(f"{spec} cannot run: missing " + "; and ".join(missing))


def placement_of(spec: str) -> str | None:
    """The body placement a live source's spec names (`…?at=hip`), None without one."""
    from urllib.parse import parse_qs

    query = spec.split("?", 1)[1] if "?" in spec else ""
    return (parse_qs(query).get("at") or [None])[-1]


def bundle_for_placements(placements: set[str]) -> str | None:
    """The bundled model whose sensor placements (its channel names' first part: `hip` for
    USC-HAD; `T`, `RA`, `LA`, `RL`, `LL` for DSADS) are all among `placements`; of several, the
    one using the most."""
    from streamhar.models.bundle import bundled_names

    best, used = None, 0
    for name in bundled_names():
        have = {c.split(".", 1)[0] for c in bundle_meta(f"bundled:{name}").get("channels", [])}
        if have and have <= placements and len(have) > used:
            best, used = f"bundled:{name}", len(have)
    return best


def resolve_bundle(spec: str, bundle: str, all_specs: list[str] | None = None) -> str:
    if bundle != "auto":
        resolve_bundle_path(bundle)          # a clear error now, not in a child process
        return bundle
    if not spec.startswith("replay:"):
        placements = {p for p in map(placement_of, all_specs or [spec]) if p}
        found = bundle_for_placements(placements)
        if found is None:
            raise UsageError(f"source {spec!r}: name the model with --bundle, or say where each sensor is "
                             f"worn with ?at= (hip → bundled:usc-had; T, RA, LA, RL, LL → bundled:dsads); "
                             f"placements given: {sorted(placements) or 'none'}")
        return found
    dataset = spec.split(":")[1]
    found = bundled_for(dataset)
    if found is None:
        raise UsageError(f"no bundled model for {dataset}: pass --bundle FILE (e.g. one made with "
                         f"`streamhar train --dataset {dataset}`)")
    return found


def bundle_meta(bundle: str) -> dict:
    """A bundle's meta without building its network (no torch import in the supervisor)."""
    import json

    from safetensors import safe_open
    with safe_open(str(resolve_bundle_path(bundle)), framework="numpy") as f:
        return json.loads((f.metadata() or {}).get("meta", "{}"))


def match_sources_to_bundle(cfg) -> None:
    """Replays of the model's data set use the model's label track (OPPORTUNITY: locomotion or
    gestures), so running accuracy scores what the model predicts."""
    task = bundle_meta(cfg.bundle).get("task")
    for s in cfg.sources:
        if task and not s.task and s.spec.startswith("replay:opportunity"):
            s.task = task
