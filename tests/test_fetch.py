"""End-to-end tests of `streamhar.datasets.fetch` against a real HTTP server on 127.0.0.1.

The server serves in-memory files, honours `Range: bytes=N-`, and can be told to cut one body
short (a dropped connection), to ignore Range (a server without resume support) or to answer with
an error status. It records every request's path and Range header.
"""
from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streamhar.datasets import manifest as manifest_mod
from streamhar.datasets.fetch import fetch, missing_files
from streamhar.datasets.manifest import Expected, load_manifest, manifest_names, read_manifest
from streamhar.errors import IntegrityError, StreamharError, UsageError


# -- the local server ----------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        if srv.status:
            self.send_error(srv.status)
            return
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(match[1]) if match and not srv.ignore_range else 0
        if match and not srv.ignore_range:
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if srv.truncate_once is not None:
            # Announce the full length, send only part of it, then drop the connection.
            payload, srv.truncate_once = payload[:srv.truncate_once], None
            self.close_connection = True
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.requests = {}, []
    srv.status, srv.ignore_range, srv.truncate_once = None, False, None
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


# -- a miniature data set ------------------------------------------------------------------------

FILES = {   # a mini USC-HAD tree; sizes differ so that truncation points fall mid-member
    "USC-HAD/Readme.txt": b"USC-HAD mini release\n",
    "USC-HAD/Subject1/a1t1.mat": bytes(range(256)) * 40,
    "USC-HAD/Subject1/a2t1.mat": b"\x01\x02" * 3000,
    "USC-HAD/Subject2/a1t1.mat": b"subject two" * 500,
}


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:   # stored: the archive stays large
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


ARCHIVE = make_zip(FILES)
ARCHIVE_SHA = hashlib.sha256(ARCHIVE).hexdigest()


def write_manifest(tmp_path: Path, url: str, *, sha256: str = ARCHIVE_SHA, size: int = len(ARCHIVE),
                   unpack: str = "zip", count: int = 3, name: str = "mini"):
    path = tmp_path / "manifests" / f"{name}.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f'''
name = "{name}"
title = "Mini USC-HAD"
folder = "usc-had"
homepage = "http://example.invalid/"
url = "{url}"
archive = "USC-HAD.zip"
sha256 = "{sha256}"
size = {size}
unpack = "{unpack}"
citation = "nobody"

[[expected]]
pattern = "USC-HAD/Subject*/a*t*.mat"
count = {count}

[[expected]]
pattern = "USC-HAD/Readme.txt"
size = {len(FILES["USC-HAD/Readme.txt"])}
''')
    return read_manifest(path)


@pytest.fixture
def mini(server, tmp_path):
    server.files["/USC-HAD.zip"] = ARCHIVE
    return write_manifest(tmp_path, server.base + "/USC-HAD.zip")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- fetching ------------------------------------------------------------------------------------

def test_full_fetch_verifies_unpacks_and_deletes_archive(server, mini, tmp_path, capsys):
    data = tmp_path / "data" / "nested"   # does not exist yet: fetch creates it
    result = fetch(mini, data, progress=False)
    target = data / "usc-had"
    assert result.path == target
    assert (result.downloaded, result.resumed, result.sha256, result.unpacked) == (len(ARCHIVE), False, ARCHIVE_SHA, 4)
    assert not result.already_present
    for name, content in FILES.items():
        assert (target / name).read_bytes() == content
    assert leftovers(target) == ["USC-HAD"]   # archive deleted after unpacking, no .part
    assert server.requests == [("/USC-HAD.zip", None)]
    assert missing_files(mini, target) == []
    assert capsys.readouterr() == ("", "")   # quiet: progress off, hash known and matching


def test_resume_after_interrupted_download(server, tmp_path):
    # unpack = "none" keeps the archive, so the result can be compared byte for byte.
    server.files["/USC-HAD.zip"] = ARCHIVE
    man = write_manifest(tmp_path, server.base + "/USC-HAD.zip", unpack="none", count=0)
    man = type(man)(**{**man.__dict__, "expected": (Expected("USC-HAD.zip"),)})
    cut = len(ARCHIVE) // 3
    server.truncate_once = cut
    with pytest.raises(StreamharError, match="interrupted after .*Run the command again to resume"):
        fetch(man, tmp_path, progress=False)
    part = tmp_path / "usc-had" / "USC-HAD.zip.part"
    assert part.read_bytes() == ARCHIVE[:cut]

    result = fetch(man, tmp_path, progress=False)
    assert server.requests[1] == ("/USC-HAD.zip", f"bytes={cut}-")
    assert result.resumed and result.downloaded == len(ARCHIVE) - cut
    assert result.sha256 == ARCHIVE_SHA   # hashed over the old part and the new bytes
    assert (tmp_path / "usc-had" / "USC-HAD.zip").read_bytes() == ARCHIVE
    assert not part.exists()


def test_server_without_range_support_restarts_from_zero(server, mini, tmp_path, capsys):
    server.ignore_range = True
    part = tmp_path / "usc-had" / "USC-HAD.zip.part"
    part.parent.mkdir()
    part.write_bytes(b"garbage that must not end up in the archive")
    result = fetch(mini, tmp_path, progress=False)
    assert server.requests == [("/USC-HAD.zip", "bytes=43-")]
    assert not result.resumed and result.downloaded == len(ARCHIVE)
    assert "does not support resuming" in capsys.readouterr().err
    assert (tmp_path / "usc-had" / "USC-HAD" / "Subject2" / "a1t1.mat").read_bytes() == FILES["USC-HAD/Subject2/a1t1.mat"]


def test_416_restarts_cleanly(server, tmp_path, capsys):
    # Size unknown, so a .part longer than the archive is only found out by the server's 416.
    server.files["/USC-HAD.zip"] = ARCHIVE
    man = write_manifest(tmp_path, server.base + "/USC-HAD.zip", size=0)
    part = tmp_path / "usc-had" / "USC-HAD.zip.part"
    part.parent.mkdir()
    part.write_bytes(ARCHIVE + b"extra")
    result = fetch(man, tmp_path)   # with the progress bar, which goes to stderr only
    assert server.requests == [("/USC-HAD.zip", f"bytes={len(ARCHIVE) + 5}-"), ("/USC-HAD.zip", None)]
    assert result.sha256 == ARCHIVE_SHA and result.unpacked == 4
    out, err = capsys.readouterr()
    assert out == "" and "refused to resume" in err and "USC-HAD.zip: 100%" in err


def test_complete_part_is_finished_without_a_request(server, mini, tmp_path):
    part = tmp_path / "usc-had" / "USC-HAD.zip.part"
    part.parent.mkdir()
    part.write_bytes(ARCHIVE)
    result = fetch(mini, tmp_path, progress=False)
    assert server.requests == [] and result.unpacked == 4 and result.sha256 == ARCHIVE_SHA


def test_wrong_sha256_raises_and_leaves_nothing(server, mini, tmp_path):
    wrong = "ab" * 32
    with pytest.raises(IntegrityError) as err:
        fetch(mini, tmp_path, sha256=wrong, progress=False)
    message = str(err.value)
    assert server.base + "/USC-HAD.zip" in message and wrong in message and ARCHIVE_SHA in message
    assert leftovers(tmp_path / "usc-had") == []


def test_wrong_size_raises_and_leaves_nothing(server, tmp_path):
    server.files["/USC-HAD.zip"] = ARCHIVE
    man = write_manifest(tmp_path, server.base + "/USC-HAD.zip", size=len(ARCHIVE) + 1, sha256="")
    with pytest.raises(IntegrityError, match=f"size {len(ARCHIVE)} bytes, expected {len(ARCHIVE) + 1}"):
        fetch(man, tmp_path, progress=False)
    assert leftovers(tmp_path / "usc-had") == []


def test_unknown_hash_prints_computed_one_and_error_page_is_rejected(server, tmp_path, capsys):
    server.files["/USC-HAD.zip"] = ARCHIVE
    man = write_manifest(tmp_path, server.base + "/USC-HAD.zip", sha256="", size=0)
    fetch(man, tmp_path / "a", progress=False)
    assert f"sha256 {ARCHIVE_SHA}" in capsys.readouterr().err

    server.files["/USC-HAD.zip"] = b"<html>This dataset has moved</html>"
    with pytest.raises(IntegrityError, match="not a zip archive"):
        fetch(man, tmp_path / "b", progress=False)
    assert leftovers(tmp_path / "b" / "usc-had") == []


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_names_the_url_and_what_to_do(server, mini, tmp_path, status):
    server.status = status
    with pytest.raises(StreamharError) as err:
        fetch(mini, tmp_path, progress=False)
    message = str(err.value)
    assert f"could not download {server.base}/USC-HAD.zip: HTTP {status}" in message
    assert str(tmp_path / "usc-had" / "USC-HAD.zip") in message and "run the command again" in message
    assert not isinstance(err.value, IntegrityError)


def test_connection_refused_is_a_clear_error(mini, tmp_path):
    with socket.socket() as s:   # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/USC-HAD.zip"
    with pytest.raises(StreamharError, match=f"could not download {re.escape(url)}: .*refused"):
        fetch(mini, tmp_path, url=url, progress=False, timeout=5)


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/streamhar-evil.txt", "USC-HAD/../../evil.txt", "USC-HAD/../USC-HAD/x.mat"])
def test_zip_slip_member_is_rejected(server, tmp_path, evil):
    bad = make_zip({**FILES, evil: b"owned"})
    server.files["/USC-HAD.zip"] = bad
    man = write_manifest(tmp_path, server.base + "/USC-HAD.zip", sha256=hashlib.sha256(bad).hexdigest(),
                         size=len(bad))
    data = tmp_path / "data"
    with pytest.raises(IntegrityError, match=f"refusing to unpack member {re.escape(repr(evil))}"):
        fetch(man, data, progress=False)
    assert leftovers(data / "usc-had") == ["USC-HAD.zip"]   # kept on failure, nothing extracted
    assert not (data / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/streamhar-evil.txt").exists()


def test_incomplete_archive_reports_what_is_missing_and_keeps_it(server, tmp_path):
    server.files["/USC-HAD.zip"] = ARCHIVE
    man = write_manifest(tmp_path, server.base + "/USC-HAD.zip", count=840)
    with pytest.raises(IntegrityError, match=r"USC-HAD/Subject\*/a\*t\*\.mat: 3 file\(s\) found, 840 expected"):
        fetch(man, tmp_path, progress=False)
    assert (tmp_path / "usc-had" / "USC-HAD.zip").read_bytes() == ARCHIVE
    # Rerunning uses the kept archive instead of downloading again.
    with pytest.raises(IntegrityError):
        fetch(man, tmp_path, progress=False)
    assert len(server.requests) == 1


def test_already_present_makes_no_request_unless_forced(server, mini, tmp_path):
    for name, content in FILES.items():
        (tmp_path / "usc-had" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "usc-had" / name).write_bytes(content)
    result = fetch(mini, tmp_path, progress=False)
    assert result.already_present and result.downloaded == 0 and server.requests == []

    result = fetch(mini, tmp_path, progress=False, force=True)
    assert not result.already_present and result.downloaded == len(ARCHIVE)
    assert server.requests == [("/USC-HAD.zip", None)]


def test_archive_placed_by_hand_is_verified_and_unpacked(server, mini, tmp_path):
    (tmp_path / "usc-had").mkdir()
    (tmp_path / "usc-had" / "USC-HAD.zip").write_bytes(ARCHIVE)
    result = fetch(mini, tmp_path, progress=False)
    assert server.requests == [] and result.unpacked == 4 and result.downloaded == 0

    (tmp_path / "x" / "usc-had").mkdir(parents=True)
    (tmp_path / "x" / "usc-had" / "USC-HAD.zip").write_bytes(ARCHIVE[:-1])
    with pytest.raises(IntegrityError, match="run with --force"):
        fetch(mini, tmp_path / "x", progress=False)
    assert server.requests == []


# -- manifests -----------------------------------------------------------------------------------

def test_real_manifests_load_with_documented_fields():
    assert manifest_names() == ["dsads", "opportunity", "usc-had"]
    for name in manifest_names():
        m = load_manifest(name)
        assert (m.name, m.folder) == (name, name)
        assert m.url.startswith("https://") and m.homepage.startswith("https://") and m.citation
        assert m.url.rsplit("/", 1)[1] == m.archive
        assert m.sha256 == "" or re.fullmatch(r"[0-9a-f]{64}", m.sha256)

    dsads = load_manifest("dsads")
    assert (dsads.unpack, dsads.archive, dsads.sha256) == ("none", "data.zip", "")
    assert [(e.pattern, e.count) for e in dsads.expected] == [("data.zip", 1)]

    usc = load_manifest("usc-had")
    assert usc.unpack == "zip" and usc.url == "https://sipi.usc.edu/had/USC-HAD.zip"
    assert ("USC-HAD/Subject*/a*t*.mat", 840) in [(e.pattern, e.count) for e in usc.expected]

    opp = load_manifest("opportunity")
    assert (opp.size, opp.sha256) == (306636009, "3df913b5e5a987d309596350385087737784c9d4b811389536eb3a9bcaf6f1d0")
    dat = [e for e in opp.expected if e.pattern.endswith(".dat")]
    assert len(dat) == 24 and sum(e.size for e in dat) == 885433599
    assert all(re.fullmatch(r"OpportunityUCIDataset/dataset/S[1-4]-(ADL[1-5]|Drill)\.dat", e.pattern) for e in dat)


def test_unknown_manifest_name_lists_known_ones():
    with pytest.raises(UsageError, match="known data sets: dsads, opportunity, usc-had"):
        load_manifest("pamap2")


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace('title = "Mini USC-HAD"\n', ""), "title"),
    (lambda t: t.replace('unpack = "zip"', "unpack = 1"), "unpack"),
    (lambda t: t.replace('unpack = "zip"', 'unpack = "tar"'), "unpack"),
    (lambda t: t.replace("size = ", "size = -"), "size"),
    (lambda t: t.replace("count = 3", 'count = "3"'), "expected[0].count"),
    (lambda t: t.replace('archive = "USC-HAD.zip"', 'archive = "../x.zip"'), "archive"),
])
def test_malformed_manifest_names_file_and_field(tmp_path, edit, field):
    write_manifest(tmp_path, "http://127.0.0.1/x.zip")
    path = tmp_path / "manifests" / "mini.toml"
    path.write_text(edit(path.read_text()))
    with pytest.raises(StreamharError, match=f"{re.escape(str(path))}: manifest field {re.escape(repr(field))}"):
        read_manifest(path)


def test_wheel_install_uses_env_var_or_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.setattr(manifest_mod, "project_root", lambda: None)
    monkeypatch.delenv("STREAMHAR_MANIFESTS", raising=False)
    with pytest.raises(StreamharError, match="STREAMHAR_MANIFESTS"):
        load_manifest("usc-had")
    write_manifest(tmp_path, "http://127.0.0.1/x.zip", name="usc-had")
    monkeypatch.setenv("STREAMHAR_MANIFESTS", str(tmp_path / "manifests"))
    assert manifest_names() == ["usc-had"] and load_manifest("usc-had").title == "Mini USC-HAD"
