"""Download a data set's official archive, verify it, and unpack it into the data folder.

`fetch(manifest, data_dir)` leaves the data set in `data_dir/<folder>/`. Standard-library urllib
only (no requests), tqdm for the progress bar on stderr.

Decisions:
- **Resume.** The download goes to `<folder>/<archive>.part`. When a .part exists the request
  carries `Range: bytes=N-`; a 206 is appended to it, a 200 (server without range support) restarts
  from zero, a 416 or a Content-Range that does not start at N restarts cleanly. One call makes one
  attempt: an interrupted download raises a StreamharError and keeps the .part, and running the
  fetch again resumes it. `force=True` discards any .part and downloads from scratch.
- **Verification.** The SHA-256 is computed while streaming (over the existing .part first when
  resuming) and compared with the manifest's value or the `sha256` argument; the size is compared
  when the manifest knows it; a `.zip` must open as a zip (catches an HTML error page saved under
  the archive's name). Any mismatch deletes the .part, so the next try starts clean, and raises
  IntegrityError. With no known hash the computed one is printed, and the per-file `[[expected]]`
  checks are what vouch for the data.
- **Unpacking.** Every member name is checked before anything is written; an absolute path or a
  `..` component (zip-slip) is refused, naming the member. After a successful unpack and expected
  check the archive is deleted (the unpacked copy is what loaders read, and OPPORTUNITY's archive
  is 300 MB); on failure it is kept, so a rerun unpacks it again without downloading.
- **Already there.** If the `[[expected]]` checks pass, nothing is downloaded unless force=True.
  An archive already at `<folder>/<archive>` (put there by hand) is verified and unpacked
  instead of downloaded.
- **Errors.** Network failures (refused, timeout, HTTP 4xx/5xx, dropped connection) become a
  StreamharError naming the URL and saying what to do; none escapes as a raw traceback.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from streamhar import __version__
from streamhar.datasets.manifest import Manifest
from streamhar.datasets.paths import resolve_data_dir
from streamhar.errors import IntegrityError, StreamharError, UsageError

CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchResult:
    path: Path              # the data set's folder, data_dir/<folder>
    downloaded: int         # bytes received by this call
    resumed: bool           # whether the download continued an earlier .part
    sha256: str             # of the archive; "" when no archive was handled (already present)
    unpacked: int           # files extracted from the archive (0 for unpack = "none")
    already_present: bool = False   # nothing done: the data set was complete


def fetch(manifest: Manifest, data_dir: str | os.PathLike | None = None, *, url: str | None = None,
          sha256: str | None = None, progress: bool = True, force: bool = False,
          timeout: float = 30) -> FetchResult:
    """Make `data_dir/<manifest.folder>/` hold the complete data set; see the module docstring."""
    url = url or manifest.url
    want_hash = (sha256 or manifest.sha256).lower()
    if want_hash and not re.fullmatch(r"[0-9a-f]{64}", want_hash):
        raise UsageError(f"--sha256 must be 64 hexadecimal digits, not {sha256!r}")
    data_dir = Path(data_dir) if data_dir is not None else resolve_data_dir(None, must_exist=False)
    target = data_dir.expanduser() / manifest.folder
    archive = target / manifest.archive
    part = archive.with_name(archive.name + ".part")

    if not force and not missing_files(manifest, target):
        return FetchResult(target, 0, False, "", 0, already_present=True)
    target.mkdir(parents=True, exist_ok=True)

    if archive.is_file() and not force:
        # Put there by hand (as our error messages suggest) or kept after a failed unpack.
        got, resumed, digest = 0, False, _hash_file(archive)
        _verify(manifest, archive, archive.stat().st_size, digest, want_hash, source=str(archive), delete=False)
    else:
        if force:
            part.unlink(missing_ok=True)
        got, resumed, digest = _download(url, part, manifest.size, timeout, progress, archive)
        _verify(manifest, part, part.stat().st_size, digest, want_hash, source=url, delete=True)
        os.replace(part, archive)
    if not want_hash:
        _note(f"{archive.name}: sha256 {digest} (no published value to compare with; "
              f"checking the files instead)")

    count = 0
    if manifest.unpack == "zip":
        count = _unpack(archive, target)
    problems = missing_files(manifest, target)
    if problems:
        raise IntegrityError(
            f"{manifest.title}: {archive.name} does not contain the complete data set: "
            + "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            + (f". The archive is kept at {archive}." if manifest.unpack == "zip" else ".")
        )
    if manifest.unpack == "zip":
        archive.unlink()   # unpacked and checked: the archive is no longer needed
    return FetchResult(target, got, resumed, digest, count)


def missing_files(manifest: Manifest, target: Path) -> list[str]:
    """What the `[[expected]]` entries find wrong in `target`; empty when the data set is complete."""
    problems = []
    for item in manifest.expected:
        found = sorted(p for p in target.glob(item.pattern) if p.is_file())
        if len(found) < item.count:
            problems.append(f"{item.pattern}: {len(found)} file(s) found, {item.count} expected")
        if item.size:
            problems += [f"{p.relative_to(target)}: {p.stat().st_size} bytes, {item.size} expected"
                         for p in found if p.stat().st_size != item.size]
    return problems


# -- downloading -------------------------------------------------------------------------------

def _download(url: str, part: Path, size: int, timeout: float, progress: bool, archive: Path):
    """Fill `part` with the whole body of `url`; returns (bytes received, resumed, sha256 hex)."""
    for _ in range(2):   # the second round only after discarding an unusable .part
        have = part.stat().st_size if part.exists() else 0
        if size and have > size:
            _note(f"{part.name} is larger than the archive ({have} > {size} bytes); starting over")
            part.unlink()
            have = 0
        if size and have == size:
            return 0, True, _hash_file(part)   # complete already (stopped before the rename)
        response = _open(url, have, timeout, archive)
        if response is None:   # 416: the server has nothing past byte `have`
            _note(f"server refused to resume {part.name} at byte {have}; starting over")
            part.unlink()
            continue
        with response:
            if response.status == 206 and _range_start(response) != have:
                _note(f"server resumed {part.name} at the wrong offset; starting over")
                part.unlink()
                continue
            resuming = have > 0 and response.status == 206
            if have and not resuming:
                _note(f"server does not support resuming (answered {response.status} to a Range "
                      f"request); downloading {part.name} from the start")
            hasher = _hash_file(part, hashlib.sha256()) if resuming else hashlib.sha256()
            start = have if resuming else 0
            length = response.headers.get("Content-Length")
            body = int(length) if length and length.isdigit() else None
            total = start + body if body is not None else (size or None)
            got = 0
            with open(part, "ab" if resuming else "wb") as out, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), file=sys.stderr, disable=not progress,
            ) as bar:
                try:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        hasher.update(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
                except (OSError, http.client.HTTPException) as e:
                    raise _interrupted(url, start + got, part, archive, e) from None
            # http.client ends a short body silently: compare with what the server announced.
            if body is not None and got < body:
                raise _interrupted(url, start + got, part, archive, "connection closed early")
            return got, resuming, hasher.hexdigest()
    raise StreamharError(f"could not download {url}: the server refused every range; try again later")


def _open(url: str, have: int, timeout: float, archive: Path):
    """The server's response (200 or 206), or None for a 416; any failure as a StreamharError."""
    headers = {"User-Agent": f"streamhar/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:   # before URLError/OSError: it is a subclass of both
        e.close()
        if e.code == 416 and have:
            return None
        reason = f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        reason = str(e.reason)
    except (OSError, http.client.HTTPException, ValueError) as e:   # timeout, reset, bad URL
        reason = str(e) or type(e).__name__
    raise StreamharError(
        f"could not download {url}: {reason}. Check the address and your connection and run the "
        f"command again (a partial download is resumed), pass --url with a mirror, or download the "
        f"archive by hand and place it at {archive}"
    )


def _interrupted(url: str, at: int, part: Path, archive: Path, why) -> StreamharError:
    return StreamharError(
        f"download of {url} interrupted after {at} bytes ({why}). Run the command again to resume "
        f"from {part}, or download the archive by hand and place it at {archive}"
    )


def _range_start(response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match[1]) if match else None


# -- verifying and unpacking -------------------------------------------------------------------

def _hash_file(path: Path, hasher=None):
    """SHA-256 of a file: the hex digest, or `hasher` updated with it when one is given."""
    h = hasher or hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h if hasher is not None else h.hexdigest()


def _verify(manifest: Manifest, path: Path, size: int, digest: str, want_hash: str, *,
            source: str, delete: bool) -> None:
    """Size, hash and zip checks; `delete` removes a failing download so the next try starts clean."""
    problem = None
    if manifest.size and size != manifest.size:
        problem = f"size {size} bytes, expected {manifest.size}"
    elif want_hash and digest != want_hash:
        problem = f"sha256 mismatch: expected {want_hash}, got {digest}"
    elif manifest.archive.lower().endswith(".zip") and not zipfile.is_zipfile(path):
        problem = "not a zip archive (the server may have sent an error page)"
    if problem is None:
        return
    if delete:
        path.unlink(missing_ok=True)
        what = "the download was deleted; run the command again to retry"
    else:
        what = f"delete {path} or run with --force to download it again"
    raise IntegrityError(f"{manifest.archive} from {source}: {problem}; {what}")


def _unpack(archive: Path, target: Path) -> int:
    """Extract every member into `target` after checking all names; returns the number of files."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            root = target.resolve()
            for m in members:
                name = m.filename.replace("\\", "/")
                # zipfile would silently rewrite such names; refuse the archive instead.
                unsafe = (name.startswith("/") or re.match(r"[A-Za-z]:", name)
                          or ".." in PurePosixPath(name).parts
                          or not (root / name).resolve().is_relative_to(root))
                if unsafe:
                    raise IntegrityError(
                        f"{archive}: refusing to unpack member {m.filename!r}: an absolute path or "
                        f"'..' component could write outside {target}; the archive is not a genuine release"
                    )
            zf.extractall(target)
    except (zipfile.BadZipFile, OSError) as e:
        raise StreamharError(f"could not unpack {archive}: {e}; the archive is kept") from None
    return sum(1 for m in members if not m.is_dir())


def _note(message: str) -> None:
    print(f"streamhar: {message}", file=sys.stderr)
