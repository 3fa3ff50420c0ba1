"""A model cut down to some of its widths, for an image that holds only what it runs.

A board that runs only the narrow width (the device tier of a device/host cascade, or a part
with little flash) needs neither the other widths' requantization tables nor the weights that
only wider widths read. Width w uses the first n_i(w) rows of each conv and, of each row, the
first n_{i−1}(w) input channels (docs/FORMAT.md), so the widest kept width's slices are a
complete network on their own: the cut model computes exactly what those widths of the original
compute (tested bit for bit). Its `.shm` differs, and so does its model id.
"""
from __future__ import annotations

import copy

from streamhar.errors import UsageError
from streamhar.inference.model import IntegerModel


def keep_widths(model: IntegerModel, widths: list[float]) -> IntegerModel:
    if not widths:
        raise UsageError("keep at least one width")
    missing = [w for w in widths if w not in model.widths]
    if missing:
        raise UsageError(f"width(s) {missing} are not among the model's widths {model.widths}")
    keep = sorted(model.width_index(w) for w in set(widths))
    top = keep[-1]
    info = copy.deepcopy(model.info)
    chans = info["width_channels"][top]
    a = info["architecture"]
    conv, c_in = [], a["in_channels"]
    for i, w in enumerate(model.conv):
        conv.append(w[:chans[i], :c_in].copy())
        c_in = chans[i]
    a["channels"] = list(chans)
    info["widths"] = [model.widths[i] for i in keep]
    info["width_channels"] = [info["width_channels"][i] for i in keep]
    stored = info.get("cascade")
    if stored and not (stored.get("small") in info["widths"] and stored.get("full") in info["widths"]):
        info.pop("cascade")                 # its operating point needs a width that is gone
    cut = IntegerModel(info, conv, model.fc[:, :c_in].copy(), [model.requant[i] for i in keep],
                       [model.fc_requant[i] for i in keep])
    return cut.validate(f"the model cut to widths {info['widths']}")
