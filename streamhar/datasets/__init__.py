"""The data sets streamhar reads, by name."""
from __future__ import annotations

from streamhar.datasets.base import Dataset, RecordingRef
from streamhar.errors import UsageError


def _registry() -> dict[str, Dataset]:
    from streamhar.datasets.dsads import DSADS
    from streamhar.datasets.opportunity import Opportunity
    from streamhar.datasets.usc_had import USCHAD
    return {d.name: d for d in (DSADS(), USCHAD(), Opportunity())}


def dataset_names() -> list[str]:
    return list(_registry())


def get_dataset(name: str) -> Dataset:
    registry = _registry()
    if name not in registry:
        raise UsageError(f"unknown data set {name!r}; known: {', '.join(registry)}")
    return registry[name]


__all__ = ["Dataset", "RecordingRef", "dataset_names", "get_dataset"]
