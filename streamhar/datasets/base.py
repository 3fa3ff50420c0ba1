"""What every data set declares, and the selection of its recordings.

A `Dataset` knows its fixed facts (rate, channels, classes, subject splits), how to find its files
in a data folder (`root`), how to list its recordings cheaply (`index`, file names only) and how to
load one (`load`). Loaders read the original release formats; nothing is converted on disk.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from streamhar.errors import DataNotFound, UsageError
from streamhar.recording import Channel, Recording


@dataclass(frozen=True)
class RecordingRef:
    """One recording as the index sees it, before any sample is read."""
    id: str
    subject: str
    session: str
    files: tuple[str, ...]   # paths relative to the data set's root (zip members for DSADS's zip)


class Dataset(ABC):
    name: str                         # CLI name, e.g. "usc-had"
    title: str
    folder: str                       # sub-folder of the data folder, e.g. "usc-had"
    rate: float
    channels: tuple[Channel, ...]
    class_names: tuple[str, ...]
    splits: dict[str, tuple[str, ...]]   # split name -> subject ids; "train" and "validation" at least
    checksums: str | None = None          # checksum list beside the data (sha256sum format), if any

    # -- locating ---------------------------------------------------------------------------
    def root(self, data_dir: Path) -> Path:
        """The data set's folder inside `data_dir`; a clear error saying how to get it if absent."""
        root = Path(data_dir) / self.folder
        if not self.present(root):
            raise DataNotFound(
                f"{self.title} not found: expected {self.layout_hint(root)}. "
                f"Fetch it with `streamhar data fetch {self.name}` or point --data-dir / "
                f"$STREAMHAR_DATA at a folder that holds {self.folder}/."
            )
        return root

    @abstractmethod
    def present(self, root: Path) -> bool:
        """Whether the data set's files are laid out under `root`."""

    @abstractmethod
    def layout_hint(self, root: Path) -> str:
        """Where the files were expected, for error messages."""

    # -- reading ----------------------------------------------------------------------------
    @abstractmethod
    def index(self, root: Path) -> list[RecordingRef]:
        """Every recording found, in a fixed order (subject, then session)."""

    @abstractmethod
    def load(self, root: Path, ref: RecordingRef) -> Recording:
        """Read one recording from its original files."""

    def read_file(self, root: Path, relpath: str) -> bytes | None:
        """Bytes of a file named in the checksum list (relative to `root`), None when absent.

        Loaders that read from an archive (DSADS's data.zip) override this to read the member.
        """
        path = root / relpath
        return path.read_bytes() if path.is_file() else None

    def file_size(self, root: Path, relpath: str) -> int | None:
        path = root / relpath
        return path.stat().st_size if path.is_file() else None

    # -- selecting --------------------------------------------------------------------------
    @property
    def subjects(self) -> tuple[str, ...]:
        """Subjects of the full release, in order (the splits name a subset of them)."""
        return tuple(dict.fromkeys(s for subj in self.splits.values() for s in subj))

    def normalize_subject(self, token: str) -> str:
        """Map a user's spelling of a subject (e.g. "6" for "p6") to the data set's id; override."""
        return token

    def split_members(self, split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(subjects, recording ids) a split consists of; splits are by subject unless overridden."""
        return self.splits[split], ()

    def select(self, refs: list[RecordingRef], selector: str | None) -> list[RecordingRef]:
        """Recordings matching a selector: comma-separated split names, subjects or recording ids.

        `None` or "" or "all" selects everything. Unknown tokens are an error listing what exists.
        """
        if not selector or selector == "all":
            return list(refs)
        wanted_subjects: set[str] = set()
        wanted_ids: set[str] = set()
        by_subject = {r.subject for r in refs}
        by_id = {r.id for r in refs}
        for token in (t.strip() for t in selector.split(",")):
            if not token:
                continue
            if token in self.splits:
                subjects, ids = self.split_members(token)
                wanted_subjects.update(subjects)
                wanted_ids.update(ids)
            elif token in by_id:
                wanted_ids.add(token)
            elif self.normalize_subject(token) in by_subject:
                wanted_subjects.add(self.normalize_subject(token))
            else:
                raise UsageError(
                    f"{self.name}: no split, subject or recording called {token!r}. "
                    f"Splits: {', '.join(self.splits)}; subjects present: "
                    f"{', '.join(sorted(by_subject, key=natural_key))}; recording ids look like "
                    f"{refs[0].id if refs else '(none found)'}."
                )
        chosen = [r for r in refs if r.subject in wanted_subjects or r.id in wanted_ids]
        if not chosen:
            raise DataNotFound(f"{self.name}: selector {selector!r} matches no recording in the data folder")
        return chosen

    def load_selection(self, data_dir: Path, selector: str | None = None, **load_options) -> list[Recording]:
        """Load every selected recording; `load_options` go to `load` (OPPORTUNITY's `task`)."""
        root = self.root(data_dir)
        return [self.load(root, ref, **load_options) for ref in self.select(self.index(root), selector)]


def natural_key(text: str) -> list:
    """Sort "p10" after "p9" and "Subject12" after "Subject2"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
