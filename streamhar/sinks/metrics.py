"""Running metrics of a prediction stream: what the live view shows and the exit summary reports.

`update(batch, latency_s, now)` is pure bookkeeping; the caller supplies the wall clock, so tests
replay an exact update schedule. Scores come from a running confusion matrix (constant memory, and
`evaluation.metrics.scores` gives the same numbers as an offline evaluation of the same windows);
latencies are kept whole, in a doubling float64 buffer, because p99 over a long run cannot be
recovered from a summary and a million float64s is only 8 MB.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from streamhar.evaluation.metrics import confusion, scores

if TYPE_CHECKING:     # only a type here: importing the inference stage costs seconds (torch)
    from streamhar.inference.stage import PredictionBatch

RECENT = 100    # windows behind "escalation_rate_recent": about 2 s of a 50 windows/s stream


class RunningMetrics:
    def __init__(self, class_names: list[str], rate_window_s: float = 2.0):
        self.class_names = list(class_names)
        self.rate_window_s = float(rate_window_s)
        n = len(self.class_names)
        self.cm = np.zeros((n, n), np.int64)
        self.windows = self.escalated = self.macs = 0
        # the device-tier cascade: windows whose narrow width ran on a device
        self.device_windows = self.device_escalated = self.device_macs = 0
        self._lat = np.empty(4096, np.float64)
        self._recent = np.zeros(0, bool)
        self._updates: deque[tuple[float, int]] = deque()   # (wall time, windows) inside the rate window
        self._first_update: float | None = None
        self.last: dict | None = None                      # the latest window, for the live view

    def update(self, batch: PredictionBatch, latency_s: np.ndarray, now: float) -> None:
        n = len(batch)
        lat = np.asarray(latency_s, np.float64).reshape(-1)
        if len(lat) != n:
            raise ValueError(f"{len(lat)} latencies for a batch of {n} windows")
        if self._first_update is None:
            self._first_update = now
        self._updates.append((now, n))
        while self._updates and self._updates[0][0] <= now - self.rate_window_s:
            self._updates.popleft()
        if n == 0:
            return
        if self.windows + n > len(self._lat):               # amortized O(1) per window
            grown = np.empty(max(2 * len(self._lat), self.windows + n), np.float64)
            grown[:self.windows] = self._lat[:self.windows]
            self._lat = grown
        self._lat[self.windows:self.windows + n] = lat
        self.windows += n
        esc = np.asarray(batch.escalated, bool)
        self.escalated += int(esc.sum())
        self.macs += int(np.asarray(batch.macs, np.int64).sum())
        dev = np.asarray(batch.device, bool)
        if dev.any():
            self.device_windows += int(dev.sum())
            self.device_escalated += int((dev & esc).sum())
            self.device_macs += int(np.asarray(batch.device_macs, np.int64).sum())
        self._recent = np.concatenate([self._recent, esc[-RECENT:]])[-RECENT:]
        labels, classes = np.asarray(batch.labels, np.int64), np.asarray(batch.classes, np.int64)
        known = (labels >= 0) & (labels < len(self.class_names))   # −1: no ground truth for the window
        if known.any():
            self.cm += confusion(labels[known], classes[known], len(self.class_names))
        self.last = {"class": int(classes[-1]), "label": int(labels[-1]),
                     "confidence": float(batch.prob_margins[-1]), "recording": batch.recording_id}

    @property
    def latencies_s(self) -> np.ndarray:
        return self._lat[:self.windows]

    @property
    def labelled(self) -> int:
        return int(self.cm.sum())

    def _name(self, index: int) -> str | None:
        return self.class_names[index] if 0 <= index < len(self.class_names) else None

    def _latency_ms(self, qs: tuple[int, ...]) -> dict | None:
        if not self.windows:
            return None
        lat = self.latencies_s * 1e3
        out = {f"p{q}": float(v) for q, v in zip(qs, np.percentile(lat, qs))}
        out["max"] = float(lat.max())
        return out

    def windows_per_s(self, now: float) -> float:
        """Windows delivered in the last `rate_window_s` of wall clock (less while the run is younger)."""
        if self._first_update is None:
            return 0.0
        span = min(self.rate_window_s, now - self._first_update)
        count = sum(n for t, n in self._updates if t > now - self.rate_window_s)
        return count / span if span > 0 else 0.0

    def snapshot(self, now: float) -> dict:
        last = self.last or {}
        s = scores(self.cm, self.class_names) if self.labelled else None
        return {
            "windows": self.windows,
            "current": self._name(last.get("class", -1)),
            "confidence": last.get("confidence"),
            "truth": self._name(last.get("label", -1)),
            "recording": last.get("recording"),
            "escalation_rate": self.escalated / self.windows if self.windows else 0.0,
            "escalation_rate_recent": float(self._recent.mean()) if len(self._recent) else 0.0,
            "windows_per_s": self.windows_per_s(now),
            "latency_ms": self._latency_ms((50, 99)),
            "labelled": self.labelled,
            "accuracy": s["accuracy"] if s else None,
            "macro_f1": s["macro_f1"] if s else None,
            "device": self._device(),
        }

    def _device(self) -> dict | None:
        """Device-tier windows: committed on the device vs escalated to the host (None: none)."""
        if not self.device_windows:
            return None
        return {"windows": self.device_windows, "committed": self.device_windows - self.device_escalated,
                "escalated": self.device_escalated,
                "escalation_rate": self.device_escalated / self.device_windows,
                "device_macs": self.device_macs, "device_macs_per_window": self.device_macs / self.device_windows}

    def summary(self) -> dict:
        out = {
            "windows": self.windows,
            "escalated": self.escalated,
            "escalation_rate": self.escalated / self.windows if self.windows else 0.0,
            "macs": self.macs,
            "macs_per_window": self.macs / self.windows if self.windows else 0.0,
            "latency_ms": self._latency_ms((50, 90, 99)),
            "labelled": self.labelled,
        }
        if self.device_windows:
            out["device"] = self._device()
        if out["latency_ms"] is not None:
            out["latency_ms"]["mean"] = float(self.latencies_s.mean() * 1e3)
        if self.labelled:
            s = scores(self.cm, self.class_names)
            out.update({k: s[k] for k in ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion")})
        return out
