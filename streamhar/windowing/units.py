"""Unit conversion between what a source measures in and what a model was trained on.

Live sources deliver SI units (m/s^2, rad/s, uT) whatever the device sends; the bundled models
keep their data set's units (USC-HAD: g and dps; DSADS: m/s^2, rad/s and the Xsens MTx's
magnetometer "a.u."). The window stage multiplies each channel by `factor(source_unit,
model_unit)` before anything else, so a hip IMU streaming m/s^2 feeds `bundled:usc-had`.

Only conversions that are exact by definition are known (1 g = 9.80665 m/s^2 by the CGPM; a
degree is π/180 rad; 1 gauss = 100 µT), plus one documented convention: the Xsens MTx reports its
magnetometer in "a.u.", the field normalized to the local Earth field at calibration, taken here
as 50 µT (the emulated wearables use the same constant, so a simulated DSADS replay is exact; a
real magnetometer is right to within the local field's deviation from 50 µT).
"""
from __future__ import annotations

import math

STANDARD_GRAVITY = 9.80665
EARTH_FIELD_UT = 50.0

# unit → (dimension, value of one unit in the dimension's base unit)
_UNITS = {
    "m/s^2": ("acceleration", 1.0), "m/s2": ("acceleration", 1.0), "g": ("acceleration", STANDARD_GRAVITY),
    "mg": ("acceleration", STANDARD_GRAVITY / 1000),
    "rad/s": ("angular rate", 1.0), "dps": ("angular rate", math.pi / 180), "deg/s": ("angular rate", math.pi / 180),
    "uT": ("magnetic field", 1.0), "µT": ("magnetic field", 1.0), "mT": ("magnetic field", 1000.0),
    "gauss": ("magnetic field", 100.0), "mgauss": ("magnetic field", 0.1),
    "a.u.": ("magnetic field", EARTH_FIELD_UT),
}


def factor(source_unit: str, model_unit: str) -> float | None:
    """The multiplier taking a value in `source_unit` to `model_unit`; 1.0 when they are the same
    unit, None when no conversion is known (different dimensions, or a unit not in the table)."""
    if source_unit == model_unit:
        return 1.0
    a, b = _UNITS.get(source_unit), _UNITS.get(model_unit)
    if a is None or b is None or a[0] != b[0]:
        return None
    return a[1] / b[1]
