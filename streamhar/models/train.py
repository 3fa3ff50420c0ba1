"""Quantization-aware training of a variable-width network (Daghero et al. 2022, §5.1 recipe).

- Loss: cross-entropy weighted by inverse class frequency (w_c = N / (K · n_c)).
- Every batch runs forward and backward at every width, accumulating gradients, before one Adam
  step (slimmable training); switchable BN keeps each width's statistics apart.
- In-place distillation (US-Nets, Yu & Huang 2019; optional, `distill` > 0): the full width learns
  from the labels; each narrower width learns (1 − α)·CE(labels) + α·T²·KL(full ∥ narrow) at
  temperature T, against the full width's detached output of the same batch. A narrow model
  that imitates the full one is confident where the full one is and agrees with it there, which
  is what the cascade's margin test relies on.
- Model selection: after each epoch the validation subjects are scored at every width; the score
  is the mean macro-F1 over widths (both the narrow and the full model matter to the cascade).
  With `schedule="plateau"` ReduceLROnPlateau (×0.5, patience 3) follows that score; with
  `schedule="cosine"` the learning rate decays along a cosine from `lr` to 0 over `epochs`
  (per step), which settles the shared weights instead of reacting to a noisy one-subject
  validation score. Early stopping (patience) follows the score; the best epoch's weights are kept.
- Determinism: fixed seeds for torch and numpy, one shuffling generator.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from streamhar.evaluation.metrics import macro_f1
from streamhar.models.har_cnn import HARNet


@dataclass
class TrainSettings:
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0
    patience: int = 8
    lr_patience: int = 3
    max_steps: int | None = None         # stop after this many optimizer steps (tests)
    augment: bool = True                 # random per-window amplitude scaling, ±10 %
    distill: float = 0.0                 # α: weight of the full width's soft targets for narrow widths
    temperature: float = 2.0             # T of the distillation softmax
    schedule: str = "plateau"            # "plateau" or "cosine"


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -1.0
    steps: int = 0


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(teacher/T) ∥ softmax(student/T)), batch mean (Hinton et al. 2015)."""
    t = temperature
    return nn.functional.kl_div(torch.log_softmax(student / t, 1), torch.log_softmax(teacher / t, 1),
                                reduction="batchmean", log_target=True) * (t * t)


@torch.no_grad()
def predict(model: HARNet, x: np.ndarray, width: float, batch_size: int = 512) -> np.ndarray:
    """Logits [N, K] of normalized windows at one width, in eval mode."""
    was_training = model.training
    model.eval()
    out = [model(torch.from_numpy(x[i:i + batch_size]), width) for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.empty((0, model.cfg.n_classes), np.float32)


def train(model: HARNet, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
          settings: TrainSettings, on_epoch: Callable[[dict], None] | None = None,
          on_step: Callable[[float], None] | None = None) -> History:
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    cfg = model.cfg
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(y_train, cfg.n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.schedule not in ("plateau", "cosine"):
        raise ValueError(f"schedule must be 'plateau' or 'cosine', got {settings.schedule!r}")
    steps_per_epoch = max(1, -(-len(y_train) // settings.batch_size))
    total_steps = settings.epochs * steps_per_epoch
    if settings.max_steps:
        total_steps = min(total_steps, settings.max_steps)
    sched = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=settings.lr_patience)
             if settings.schedule == "plateau" else
             torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + np.cos(np.pi * min(step, total_steps) / total_steps))))
    history = History()
    best_state = copy.deepcopy(model.state_dict())
    stale = 0
    for epoch in range(settings.epochs):
        model.train()
        order = rng.permutation(len(y_train))
        losses = []
        for start in range(0, len(order), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            if len(idx) < 2:          # BatchNorm needs two samples
                continue
            xb = x_train[idx]
            if settings.augment:
                xb = xb * rng.uniform(0.9, 1.1, size=(len(idx), 1, 1)).astype(np.float32)
            xb, yb = torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(y_train[idx])
            opt.zero_grad(set_to_none=True)
            total = 0.0
            teacher = None
            for width in reversed(cfg.widths):
                logits = model(xb, width)
                loss = loss_fn(logits, yb)
                if teacher is not None and settings.distill > 0:
                    loss = (1 - settings.distill) * loss + settings.distill * distill_loss(
                        logits, teacher, settings.temperature)
                loss.backward()
                total += loss.item()
                if teacher is None:
                    teacher = logits.detach()
            opt.step()
            if settings.schedule == "cosine":
                sched.step()
            history.steps += 1
            losses.append(total / len(cfg.widths))
            if on_step:
                on_step(losses[-1])
            if settings.max_steps and history.steps >= settings.max_steps:
                break
        f1s = {w: macro_f1(y_val, predict(model, x_val, w).argmax(1), cfg.n_classes) for w in cfg.widths}
        score = float(np.mean(list(f1s.values())))
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
                  "val_macro_f1": {str(w): round(f, 4) for w, f in f1s.items()}, "score": round(score, 4),
                  "lr": opt.param_groups[0]["lr"]}
        history.epochs.append(record)
        if on_epoch:
            on_epoch(record)
        if settings.schedule == "plateau":
            sched.step(score)
        if score > history.best_score:
            history.best_score, history.best_epoch = score, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
            stale = 0
        else:
            stale += 1
        if stale >= settings.patience or (settings.max_steps and history.steps >= settings.max_steps):
            break
    model.load_state_dict(best_state)
    model.eval()
    return history
