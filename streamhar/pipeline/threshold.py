"""The cascade threshold as a user writes it (`--threshold`, `streamhar ctl threshold`).

An integer ("34002") is a margin of the integer logits (units of 1/logit_scale), the unit the
cascade and the firmware decide on; a number with a decimal point in [0, 1] ("0.3") is a
softmax-probability margin (Daghero et al.'s scale); "default" is the model's stored point;
"never" (= −1) never escalates, "always" always does.

Here, not in `inference/`, because the supervisor and the source stage parse thresholds too and
must not import torch (`streamhar.inference` pulls it in: seconds per process).
"""
from __future__ import annotations

from streamhar.errors import UsageError

ALWAYS = 2 ** 62          # above every margin, and still an i64 on the device link


def parse_threshold(text: str | float | int, default: int) -> tuple[str, float]:
    """("logit", int) or ("prob", float) for a threshold as a user writes it (see module doc)."""
    s = str(text).strip().lower()
    if s == "default":
        return "logit", int(default)
    if s == "never":
        return "logit", -1
    if s == "always":
        return "logit", float(ALWAYS)
    try:
        if "." in s or "e" in s:
            v = float(s)
            if not 0.0 <= v <= 1.0:
                raise UsageError(f"threshold {text!r}: a probability margin must be in [0, 1] "
                                 "(write an integer for a logit margin)")
            return "prob", v
        return "logit", int(s)
    except ValueError:
        raise UsageError(f"threshold {text!r}: expected an integer logit margin (e.g. 34002), a probability "
                         "margin with a decimal point (e.g. 0.3), 'default', 'never' or 'always'") from None


def device_threshold(text: str | float | int, default: int, device: str = "the device") -> int:
    """The integer margin a device-tier cascade decides on (SET_THRESHOLD): a device computes no
    softmax, so a probability margin is refused rather than approximated."""
    kind, value = parse_threshold(text, default)
    if kind == "prob":
        raise UsageError(f"threshold {text!r}: {device} decides on integer logit margins (it has no "
                         "exponentials for a probability margin); give an integer (e.g. 34002), "
                         "'default', 'never' or 'always'")
    if value < -1:
        raise UsageError(f"threshold {text!r}: {device} takes a margin ≥ −1 (−1: never escalate)")
    return int(value)
