"""Model bundles: one versioned, self-describing file per trained network — no pickle.

The file is a safetensors file (tensors as raw little-endian arrays behind a JSON header; loading
runs no code). Its string metadata holds:
- `format` = "streamhar-bundle", `version` = BUNDLE_VERSION;
- `config`: the ModelConfig (architecture, widths, quantizer specs);
- `meta`: data set, window length/stride/rate, channel names and units the model expects, class
  names, training metadata (seed, epochs, split, metrics, date, streamhar version).
Tensors: the model's state dict under `model.*`, the per-channel normalization under
`norm.mean` / `norm.std` (float32, in the channel order of `meta.channels`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from streamhar.errors import StreamharError
from streamhar.models.config import ModelConfig
from streamhar.models.har_cnn import HARNet

FORMAT = "streamhar-bundle"
BUNDLE_VERSION = 1
REQUIRED_META = ("dataset", "rate", "window", "stride", "channels", "units", "class_names")


class BundleError(StreamharError):
    """A bundle file that cannot be used: unreadable, of another version, or incomplete."""


@dataclass
class Bundle:
    model: HARNet
    config: ModelConfig
    mean: np.ndarray      # float32 [C]
    std: np.ndarray       # float32 [C]
    meta: dict
    path: str = ""

    @property
    def channels(self) -> list[str]:
        return list(self.meta["channels"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """Windows [N, C, L] in source units → the model's normalized input."""
        return ((x - self.mean[None, :, None]) / self.std[None, :, None]).astype(np.float32)


def save_bundle(path: str | Path, model: HARNet, mean: np.ndarray, std: np.ndarray, meta: dict) -> Path:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"bundle meta lacks {missing}")
    tensors = {f"model.{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tensors["norm.mean"] = torch.as_tensor(np.asarray(mean, np.float32))
    tensors["norm.std"] = torch.as_tensor(np.asarray(std, np.float32))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={
        "format": FORMAT, "version": str(BUNDLE_VERSION),
        "config": json.dumps(model.cfg.to_dict()), "meta": json.dumps(meta),
    })
    return path


def update_meta(name: str | Path, changes: dict) -> Path:
    """Rewrite a bundle file with `changes` merged into its meta (tensors and config untouched)."""
    bundle = load_bundle(name)
    path = Path(bundle.path)
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata())
    tensors = load_file(str(path))
    header["meta"] = json.dumps({**bundle.meta, **changes})
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=header)
    tmp.replace(path)
    return path


def bundled_names() -> list[str]:
    """The models shipped in the package (`bundled:NAME`)."""
    folder = Path(str(resources.files("streamhar.models") / "bundled"))
    return sorted(p.stem for p in folder.glob("*.safetensors"))


def resolve_bundle_path(name: str) -> Path:
    """A file path, or `bundled:NAME` for a bundle shipped in the package."""
    if name.startswith("bundled:"):
        stem = name.split(":", 1)[1]
        path = Path(str(resources.files("streamhar.models") / "bundled" / f"{stem}.safetensors"))
        if not path.is_file():
            shipped = sorted(p.stem for p in path.parent.glob("*.safetensors"))
            raise BundleError(f"no bundled model {stem!r}; shipped: {', '.join(shipped) or 'none'}")
        return path
    path = Path(name)
    if not path.is_file():
        raise BundleError(f"{path}: bundle file not found")
    return path


def load_bundle(name: str | Path) -> Bundle:
    path = resolve_bundle_path(str(name))
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable model bundle ({exc}); the file may be truncated "
                          "or not a streamhar bundle") from None
    if header.get("format") != FORMAT:
        raise BundleError(f"{path}: not a streamhar bundle (format {header.get('format')!r})")
    if header.get("version") != str(BUNDLE_VERSION):
        raise BundleError(f"{path}: bundle version {header.get('version')!r}, this streamhar reads "
                          f"version {BUNDLE_VERSION}; retrain or export it with a matching streamhar")
    try:
        config = ModelConfig.from_dict(json.loads(header["config"]))
        meta = json.loads(header["meta"])
    except (KeyError, ValueError, TypeError) as exc:
        raise BundleError(f"{path}: bundle header is damaged ({exc})") from None
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing or "norm.mean" not in tensors:
        raise BundleError(f"{path}: bundle lacks {missing or ['norm.mean']}")
    model = HARNet(config)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise BundleError(f"{path}: weights do not fit the architecture in its header ({exc})") from None
    model.eval()
    return Bundle(model, config, tensors["norm.mean"].numpy(), tensors["norm.std"].numpy(), meta, str(path))


def check_channels(bundle: Bundle, source_channels: list[str], source_units: list[str], where: str) -> list[int]:
    """Index of each of the bundle's channels in the source; a clear error for any missing or mismatched."""
    index = []
    for name, unit in zip(bundle.meta["channels"], bundle.meta["units"]):
        if name not in source_channels:
            raise BundleError(f"{where} has no channel {name!r} that model {bundle.path} expects "
                              f"(it has {', '.join(source_channels[:8])}{', …' if len(source_channels) > 8 else ''})")
        i = source_channels.index(name)
        if source_units[i] != unit:
            raise BundleError(f"{where}: channel {name!r} is in {source_units[i]!r}, model {bundle.path} expects {unit!r}")
        index.append(i)
    return index
