"""Streaming resampling of one source onto the model's sample grid (scipy.signal).

A source whose rate differs from the model's is (1) low-pass filtered at its own rate by a
linear-phase FIR (`scipy.signal.firwin`, cutoff 0.8 × the lower of the two Nyquist frequencies),
run with `scipy.signal.lfilter` and its state `zi` carried from chunk to chunk, then (2) evaluated
on the model grid (times k / rate_out, k integer) by linear interpolation between the two filtered
samples around each grid time.

Group delay: the FIR delays its output by (numtaps − 1) / 2 input samples. Each filtered sample is
therefore stamped with its input timestamp minus that delay (`Resampler.delay`), so the output is
in step with the input clock; the price is that a grid time is produced only once the input
reaches it + `delay` (latency), and the last `delay` seconds of a segment never reach the grid.

Warm-up: the filter starts in the steady state of the segment's first value (`lfilter_zi` × x0),
as if the signal had been constant before it. The first ≈ `delay` seconds of output carry that
edge assumption; they are emitted, not dropped (a constant edge is what the data can tell).

Chunk invariance: the same input cut into other chunks gives the same grid points with the same
values up to float64 rounding of the filter (lfilter sums a FIR's taps in a chunk-dependent order);
the interpolation picks, for each grid time, the first filtered sample at or after it and its
predecessor, whatever the chunking, and takes that sample exactly when the times coincide.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import signal


def design_filter(rate_in: float, rate_out: float) -> np.ndarray:
    """Anti-aliasing FIR taps at `rate_in` for resampling to `rate_out`.

    Hamming window (≈ 53 dB stop band); the length gives a transition band of ≈ 0.1 × the lower
    rate, so the stop band starts at about the output Nyquist frequency when downsampling.
    """
    ratio = max(1.0, rate_in / rate_out)
    numtaps = 2 * math.ceil(16 * ratio) + 1   # odd: a whole-sample group delay
    cutoff = 0.8 * min(rate_in, rate_out) / 2
    return signal.firwin(numtaps, cutoff, fs=rate_in)


class Resampler:
    """State of one source's resampling; `process` per contiguous piece, `reset` at a restart."""

    def __init__(self, rate_in: float, rate_out: float):
        self.rate_in = float(rate_in)
        self.rate_out = float(rate_out)
        self.taps = design_filter(self.rate_in, self.rate_out)
        self.delay = (len(self.taps) - 1) / 2 / self.rate_in   # seconds
        self._zi_unit = signal.lfilter_zi(self.taps, [1.0])
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample starts a new segment (after a gap or a new recording)."""
        self._zi = None
        self._tau = np.empty(0)          # time (delay-compensated) of the last filtered sample
        self._y = None                   # its value [1, C]
        self._hist_t = np.empty(0)       # recent input times and labels, to label grid points
        self._hist_l = np.empty(0, np.int16)
        self._next_k = 0                 # next grid index to produce

    def process(self, t: np.ndarray, x: np.ndarray, labels: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """Feed contiguous samples (t [n], x [n, C] finite, labels [n]); return (k0, values, labels)
        for the grid points k0, k0+1, … that became available (possibly none)."""
        x64 = np.asarray(x, np.float64)
        if self._zi is None:
            self._zi = self._zi_unit[:, None] * x64[0][None, :]
            # First grid point at or after the segment's first sample (1e-6 of a period absorbs
            # the rounding of t0 × rate for on-grid timestamps).
            self._next_k = math.ceil(t[0] * self.rate_out - 1e-6)
            self._y = np.empty((0, x64.shape[1]))
        y, self._zi = signal.lfilter(self.taps, [1.0], x64, axis=0, zi=self._zi)
        tau = np.concatenate([self._tau, t - self.delay])
        y = np.concatenate([self._y, y])
        hist_t = np.concatenate([self._hist_t, t])
        hist_l = np.concatenate([self._hist_l, labels.astype(np.int16)])

        k_hi = math.floor(tau[-1] * self.rate_out) + 1
        ks = np.arange(self._next_k, max(k_hi + 1, self._next_k))
        tk = ks / self.rate_out
        keep = tk <= tau[-1]    # the same comparison the interpolation relies on
        ks, tk = ks[keep], tk[keep]
        k0 = self._next_k
        if len(ks):
            j1 = np.searchsorted(tau, tk, side="left")     # first filtered sample at or after tk
            j0 = np.maximum(j1 - 1, 0)
            den = tau[j1] - tau[j0]
            w = np.divide(tk - tau[j0], den, out=np.ones_like(tk), where=den > 0)
            w = np.clip(w, 0.0, 1.0)[:, None]
            values = y[j0] * (1.0 - w) + y[j1] * w
            # A grid point's label: that of the last input sample measured at or before it.
            li = np.maximum(np.searchsorted(hist_t, tk, side="right") - 1, 0)
            out_labels = hist_l[li]
            self._next_k = int(ks[-1]) + 1
        else:
            values = np.empty((0, x64.shape[1]))
            out_labels = np.empty(0, np.int16)
        self._tau, self._y = tau[-1:], y[-1:]
        # Grid times to come lie after tau[-1] = t_last − delay: keep enough input history to label them.
        keep_n = len(self.taps) + 1
        self._hist_t, self._hist_l = hist_t[-keep_n:], hist_l[-keep_n:]
        return k0, values.astype(np.float32), out_labels
