"""`streamhar train` as a function: data → windows → normalization → QAT → bundle file."""
from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from streamhar import __version__
from streamhar.datasets import get_dataset
from streamhar.errors import UsageError
from streamhar.models.bundle import save_bundle
from streamhar.models.config import ModelConfig
from streamhar.models.cost import macs, weight_bytes
from streamhar.models.data import load_split, normalization_stats, sensor_groups
from streamhar.models.defaults import DEFAULTS
from streamhar.models.har_cnn import HARNet
from streamhar.models.train import History, TrainSettings, train


def model_config(**fields) -> ModelConfig:
    """A ModelConfig, with a user's inconsistent options reported as a usage error."""
    try:
        return ModelConfig(**fields)
    except ValueError as exc:
        raise UsageError(f"model options: {exc}") from None


def fit(dataset: str, data_dir: Path, out: Path, *, task: str | None = None, fusion: str = "early",
        widths: tuple[float, ...] = (0.25, 0.5, 1.0), weight_quant: str = "ternary-eq",
        act_quant: str = "pact-u8", fc_weight_quant: str = "int8",
        channels: tuple[int, ...] | None = None, kernels: tuple[int, ...] | None = None,
        pools: tuple[int, ...] | None = None, layer_weight_quant: tuple[str, ...] = (),
        window: int | None = None, stride: int | None = None,
        settings: TrainSettings = TrainSettings(), on_epoch: Callable[[dict], None] | None = None,
        on_step: Callable[[float], None] | None = None, log: Callable[[str], None] = print) -> tuple[Path, History]:
    d = DEFAULTS[dataset]
    window = window or d.window
    train_stride = stride or d.train_stride
    started = time.time()
    train_data = load_split(dataset, data_dir, "train", window, train_stride, task)
    val_data = load_split(dataset, data_dir, "validation", window, d.eval_stride, task)
    first = train_data.recordings[0]
    mean, std = normalization_stats(train_data.recordings)

    def normalized(ws):
        return ((ws.x - mean[None, :, None]) / std[None, :, None]).astype(np.float32)

    x_train, x_val = normalized(train_data.windows), normalized(val_data.windows)
    log(f"{dataset}: {len(x_train):,} training windows from {len(train_data.recordings)} recordings, "
        f"{len(x_val):,} validation windows; window {window} samples ({window / first.rate:g} s)")
    cfg = model_config(
        in_channels=len(first.channels), n_classes=len(first.class_names), window=window,
        channels=channels or d.channels, kernels=kernels or d.kernels, pools=pools or d.pools,
        widths=tuple(widths), layer_weight_quant=tuple(layer_weight_quant),
        fusion=fusion, groups=sensor_groups(first) if fusion != "early" else (),
        weight_quant=weight_quant, fc_weight_quant=fc_weight_quant, act_quant=act_quant)
    model = HARNet(cfg)
    history = train(model, x_train, train_data.windows.y, x_val, val_data.windows.y, settings,
                    on_epoch=on_epoch, on_step=on_step)
    splits = get_dataset(dataset).splits
    meta = {
        "dataset": dataset, "task": task, "rate": first.rate, "window": window,
        "stride": d.eval_stride, "train_stride": train_stride,
        "channels": list(first.channel_names), "units": [c.unit for c in first.channels],
        "class_names": list(first.class_names),
        "training": {
            "train_subjects": list(splits["train"]), "validation_subjects": list(splits["validation"]),
            "seed": settings.seed, "epochs_run": len(history.epochs), "best_epoch": history.best_epoch,
            "steps": history.steps, "lr": settings.lr, "batch_size": settings.batch_size,
            "augment": settings.augment,
            "distill": settings.distill, "temperature": settings.temperature,
            "schedule": settings.schedule, "history": history.epochs,
            "seconds": round(time.time() - started, 1),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "streamhar_version": __version__, "torch_version": torch.__version__,
        },
        "cost": {str(w): {"macs": macs(cfg, w), "weight_bytes": weight_bytes(cfg, w)} for w in cfg.widths},
    }
    path = save_bundle(out, model, mean, std, meta)
    # The cascade's default operating point, chosen on the validation windows with the integer
    # engine (networks the integer engine cannot run, e.g. fp32 or late fusion, get none).
    from streamhar.inference import ExportError
    from streamhar.inference import operating_point
    from streamhar.models.bundle import load_bundle, update_meta
    try:
        point = operating_point.choose(load_bundle(path), val_data.windows.x, val_data.windows.y, "validation")
    except ExportError as e:
        log(f"no default cascade threshold: {e}")
    else:
        if point:
            update_meta(path, {"cascade": point})
            log(f"default cascade threshold {point['threshold']}: macro-F1 {point['macro_f1']:.4f} "
                f"(full width {point['full_macro_f1']:.4f}) at {point['cost_fraction']:.1%} of the full width's MACs")
    return path, history
