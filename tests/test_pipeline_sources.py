"""`streamhar run` / `stage` / `ctl` end to end: the real multi-process pipeline over ZeroMQ on real data.

Several sources (one starting late), changing the cascade threshold of a running pipeline,
standalone stages over tcp with two inference workers, the ZeroMQ PUB sink, and the errors of a
bad pipeline file or a missing data set. Every test starts real child processes (each imports the
inference stack: ~5–30 s of start-up on a small machine), so each run is kept short.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import zmq

from streamhar.transport import messages as m

DATA = Path(os.environ.get("STREAMHAR_DATA", "../shared/data")).resolve()
RUN_TIMEOUT = 300


def streamhar(*args: str, cwd: Path, env: dict | None = None, timeout: float = RUN_TIMEOUT):
    return subprocess.run([sys.executable, "-m", "streamhar", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def popen(*args: str, cwd: Path, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamhar", *args], cwd=cwd,
                            env={**os.environ, **(env or {})}, **kw)


def read_rows(path: Path) -> list[dict]:
    """Whole lines of a JSON-lines file that may still be written."""
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n") and line.strip()]


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
        p.wait()


@pytest.fixture
def private_tmp():
    """A short private TMPDIR: `streamhar run` registers its ctl endpoint there (so `streamhar ctl`
    finds this test's pipeline, not another one on the machine) and puts its ipc sockets there
    (short path: ipc addresses are limited to ~100 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="shr-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------------------ 1. late source

DSADS_WINDOW = 125      # samples at 25 Hz, stride 125 (bundled:dsads)
DSADS_RATE = 25.0


# delay 1 s: the limbs start while the torso may still be sending; 8 s: after the torso has sent
# everything and its end (the window stage holds its chunks, and their sequence must count whole).
@pytest.mark.parametrize("delay", [1.0, 8.0])
def test_second_source_starting_late_loses_exactly_the_windows_before_it(tmp_path, delay):
    (tmp_path / "two.toml").write_text(
        'speed = "max"\n'
        '[[sources]]\nspec = "replay:dsads:p6"\nname = "torso"\nchannels = ["T.*"]\n'
        '[[sources]]\nspec = "replay:dsads:p6"\nname = "limbs"\nchannels = ["RA.*", "LA.*", "RL.*", "LL.*"]\n'
        f'start = 10.0\ndelay = {delay}\n')
    one = streamhar("run", "--source", "replay:dsads:p6", "--speed", "max", "--no-view", "--jsonl", "one.jsonl",
                    "--summary-json", "one.json", "--data-dir", str(DATA), cwd=tmp_path)
    assert one.returncode == 0, one.stdout + one.stderr
    two = streamhar("run", "--config", "two.toml", "--no-view", "--jsonl", "two.jsonl", "--summary-json",
                    "two.json", "--data-dir", str(DATA), cwd=tmp_path)
    assert two.returncode == 0, two.stdout + two.stderr

    single, double = read_rows(tmp_path / "one.jsonl"), read_rows(tmp_path / "two.jsonl")
    assert len(single) == 19 * 7500 // DSADS_WINDOW            # 19 activities × 5 min at 25 Hz
    # The limbs start 10 s = 250 samples into recording p6/a01 (stream time 0): windows [0, 125) and
    # [125, 250) lack them, the window starting at sample 250 is the first both sources cover, and the
    # stride grid (anchored at sample 250) coincides with the single source's. Nothing else differs.
    late = int(10.0 * DSADS_RATE)
    missing = [r for r in single if r["recording"] == "p6/a01" and r["t_last"] < late / DSADS_RATE]
    assert [(r["window"], r["t_last"]) for r in missing] == [(0, 4.96), (1, 9.96)]
    key = lambda r: (r["recording"], r["t_last"], r["window_crc"], r["class"])   # noqa: E731
    assert [key(r) for r in double] == [key(r) for r in single[2:]]
    assert [r["window"] for r in double] == list(range(len(single) - 2))
    assert double[0]["recording"] == "p6/a01" and double[0]["t_last"] == (late + DSADS_WINDOW - 1) / DSADS_RATE

    s = json.loads((tmp_path / "two.json").read_text())
    assert s["ok"] is True and s["sources"] == ["torso", "limbs"]
    assert (s["dropped"], s["gaps"], s["windows_lost"]) == (0, 0, 0)
    assert s["windows"] == len(single) - 2
    src = s["stages"]["window"]["stats"]["sources"]
    # The torso's samples before the common start are dropped (and only those); the limbs lose nothing.
    assert src["torso"]["samples_dropped"] == late
    assert src["limbs"]["samples_dropped"] == 0
    assert src["torso"]["samples_in"] == 19 * 7500 and src["limbs"]["samples_in"] == 19 * 7500 - late
    assert src["torso"]["samples_windowed"] == src["limbs"]["samples_windowed"] == 19 * 7500 - late
    assert s["stages"]["source-1"]["stats"]["samples"] == 19 * 7500 - late
    assert s["stages"]["source-0"]["stats"]["samples"] == 19 * 7500
    # The single-source run of the same data is clean too.
    s1 = json.loads((tmp_path / "one.json").read_text())
    assert s1["ok"] is True and s1["stages"]["window"]["stats"]["sources"]["replay:dsads:p6"]["samples_dropped"] == 0


# ------------------------------------------------------------------------------------------ 2. ctl threshold

def _wait_rows(path: Path, proc: subprocess.Popen, cond, what: str, timeout: float = 180) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = read_rows(path)
        if cond(rows):
            return rows
        if proc.poll() is not None:
            pytest.fail(f"the pipeline ended (exit {proc.returncode}) before {what}; {len(rows)} windows written")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _trailing_escalated(rows: list[dict]) -> int:
    n = 0
    for r in reversed(rows):
        if r["path"] != "escalated":
            break
        n += 1
    return n


def test_ctl_threshold_changes_a_running_pipeline(tmp_path, private_tmp):
    env = {"TMPDIR": str(private_tmp)}
    jsonl = tmp_path / "preds.jsonl"
    # USC-HAD subject 11: 2,630 s of data at 160× ≈ 16 s of streaming, 2 windows per second of data.
    # (`streamhar ctl` itself takes seconds to start on a busy machine.)
    run = popen("run", "--source", "replay:usc-had:11", "--speed", "160", "--no-view", "--jsonl", str(jsonl),
                "--summary-json", "summary.json", "--data-dir", str(DATA), cwd=tmp_path, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bad = None
    try:
        _wait_rows(jsonl, run, lambda rows: {r["path"] for r in rows} == {"small", "escalated"},
                   "windows of both paths")
        # A bad value (refused, changes nothing), sent alongside the first change.
        bad = popen("ctl", "threshold", "banana", cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
        always = streamhar("ctl", "threshold", "always", cwd=tmp_path, env=env, timeout=60)
        bad_out, bad_err = bad.communicate(timeout=60)
        still_running = run.poll() is None
        assert always.returncode == 0, always.stderr
        assert always.stdout.startswith("threshold set to always (logit margin) on 1 inference worker(s) via ipc://")
        _wait_rows(jsonl, run, lambda rows: _trailing_escalated(rows) >= 300, "300 escalated windows in a row")
        prob = streamhar("ctl", "threshold", "0.3", cwd=tmp_path, env=env, timeout=60)
        assert prob.returncode == 0, prob.stderr
        assert prob.stdout.startswith("threshold set to 0.3 (probability margin) on 1 inference worker(s) via ")
        out, err = run.communicate(timeout=RUN_TIMEOUT)
    finally:
        kill(run)
        if bad is not None:
            kill(bad)
    assert run.returncode == 0, out + err
    assert still_running, "the pipeline ended before `ctl threshold banana` was answered"
    assert bad.returncode == 2, bad_out + bad_err
    assert "the pipeline refused: threshold 'banana': expected an integer logit margin" in bad_err

    rows = read_rows(jsonl)
    assert [r["window"] for r in rows] == list(range(len(rows)))
    # The switch to "always": the start of the longest run of escalated windows.
    best, start, i = 0, 0, 0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j]["path"] == "escalated":
            j += 1
        if j - i > best:
            best, start = j - i, i
        i = j + 1
    end = start + best                  # the first window under 0.3 that was not escalated
    assert best >= 300 and end < len(rows) - 100, (start, best, len(rows))
    before, after = rows[:start], rows[end:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    events = [e for e in summary["control_events"] if e.get("cmd") == "threshold"]
    assert [(e["stage"], e["ok"], e["result"]["kind"], e["result"]["value"]) for e in events] == \
        [("infer-0", True, "logit", 2 ** 62), ("infer-0", True, "prob", 0.3)]
    default = events[0]["result"]["default"]
    # Before: the stored logit-margin threshold, both paths.
    assert {r["path"] for r in before} == {"small", "escalated"}
    assert all((r["path"] == "escalated") == (r["margin"] <= default) for r in before)
    # After: escalated exactly when the probability margin is ≤ 0.3 (prob_margin is rounded to
    # 6 digits in the file: windows within 1e-6 of 0.3 are not judged).
    judged = [r for r in after if abs(r["prob_margin"] - 0.3) > 1e-6]
    assert len(judged) >= 100
    wrong = [r for r in judged if (r["path"] == "escalated") != (r["prob_margin"] <= 0.3)]
    assert not wrong, wrong[:3]
    assert summary["ok"] is True and summary["threshold"] == {"kind": "prob", "value": 0.3, "default": default}


# ------------------------------------------------------------------------------------------ 3. standalone stages

def test_standalone_stages_over_tcp_with_two_workers(tmp_path, usc_s11_windows):
    ports = free_ports(6)
    names = ("chunks", "windows", "predictions", "control", "status", "ctl")
    eps = {k: f"tcp://127.0.0.1:{p}" for k, p in zip(names, ports)}
    cfg = tmp_path / "pipeline.toml"
    cfg.write_text(f'speed = "max"\ndata_dir = "{DATA}"\n'
                   '[[sources]]\nspec = "replay:usc-had:11"\n'
                   '[endpoints]\n' + "".join(f'{k} = "{v}"\n' for k, v in eps.items()) +
                   '[sink]\njsonl = "preds.jsonl"\n')
    # The test listens on the status endpoint (nothing else binds it without a supervisor): every
    # stage reports its counters there, which says which worker did what.
    ctx = zmq.Context()
    status = ctx.socket(zmq.PULL)
    status.setsockopt(zmq.LINGER, 0)
    status.bind(eps["status"])
    reports: dict[str, dict] = {}

    def collect(until, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; states {({k: v['state'] for k, v in reports.items()})}")
            if status.poll(100):
                rep = json.loads(status.recv())
                reports[rep["stage"]] = {**reports.get(rep["stage"], {}), **rep}

    procs: dict[str, subprocess.Popen] = {}
    logs = {}

    def start(name: str, *args: str) -> None:
        logs[name] = open(tmp_path / f"{name}.log", "w")
        procs[name] = popen("stage", *args, "--config", str(cfg), cwd=tmp_path, stdout=logs[name],
                            stderr=subprocess.STDOUT)

    def log(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text()

    try:
        start("sink", "sink")
        start("infer-0", "infer", "--index", "0")
        start("infer-1", "infer", "--index", "1")
        # Both workers connected before any window is sent, so PUSH shares the windows between them.
        collect(lambda: all(reports.get(n, {}).get("state") for n in ("sink", "infer-0", "infer-1")), 180,
                "sink and both workers ready")
        start("window", "window")
        start("source-0", "source")             # the stage names itself source-0 (--index 0)
        for name in ("source-0", "window", "sink"):
            try:
                rc = procs[name].wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"stage {name} did not end by itself at the end of the data: {log(name)[-2000:]}")
            assert rc == 0, f"stage {name} exited {rc}: {log(name)[-3000:]}"
        time.sleep(0.5)
        assert procs["infer-0"].poll() is None and procs["infer-1"].poll() is None, "workers should keep running"
        for name in ("infer-0", "infer-1"):
            procs[name].send_signal(signal.SIGTERM)
        for name in ("infer-0", "infer-1"):
            assert procs[name].wait(timeout=30) == 0, log(name)[-3000:]
        collect(lambda: all(reports.get(n, {}).get("state") == "done" for n in procs), 10, "final reports")
    finally:
        for p in procs.values():
            kill(p)
        for f in logs.values():
            f.close()
        ctx.destroy(linger=0)

    rows = read_rows(tmp_path / "preds.jsonl")
    assert [r["window"] for r in rows] == list(range(len(usc_s11_windows)))    # each window once, in order
    assert [(r["recording"], round(r["t_last"], 6)) for r in rows] == usc_s11_windows
    assert reports["sink"]["stats"]["complete"] is True and reports["sink"]["stats"]["windows"] == len(rows)
    assert reports["window"]["stats"]["windows"] == len(rows)
    done = {n: reports[f"infer-{n}"]["stats"] for n in (0, 1)}
    assert [done[n]["worker"] for n in (0, 1)] == [0, 1]
    assert done[0]["windows"] > 0 and done[1]["windows"] > 0, done   # both workers did work
    assert done[0]["windows"] + done[1]["windows"] == len(rows)
    assert reports["infer-0"].get("stopped") is True and reports["infer-1"].get("stopped") is True
    assert reports["source-0"]["stats"]["samples"] == USC_S11_SAMPLES


USC_S11_SAMPLES = 263037      # USC-HAD subject 11: 12 activities × 5 trials, 100 Hz


@pytest.fixture(scope="module")
def usc_s11_windows():
    """(recording, t_last) of every window of USC-HAD subject 11 replayed as one stream: recordings
    follow each other on one clock (the next starts one sample after the previous ends); windows of
    200 samples every 50 within each recording, on the 100 Hz grid."""
    from streamhar.datasets import get_dataset
    recs = get_dataset("usc-had").load_selection(DATA, "11")
    out, offset = [], 0
    for r in recs:
        for s in range(0, len(r) - 200 + 1, 50):
            out.append((r.id, round((offset + s + 199) / 100.0, 6)))
        offset += len(r)
    assert offset == USC_S11_SAMPLES
    return out


# ------------------------------------------------------------------------------------------ 4. PUB sink

def test_publish_sink_streams_predictions_to_a_subscriber(tmp_path):
    port = free_ports(1)[0]
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"predictions")
    sub.connect(f"tcp://127.0.0.1:{port}")        # before the pipeline binds: ZeroMQ reconnects
    received = []                                   # (seq, window_seq list, crcs, classes, pipeline running)
    # USC-HAD subject 11 at 600× ≈ 4.4 s of streaming.
    run = popen("run", "--source", "replay:usc-had:11", "--speed", "600", "--no-view", "--jsonl", "preds.jsonl",
                "--publish", f"tcp://127.0.0.1:{port}", "--summary-json", "summary.json", "--data-dir", str(DATA),
                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            running = run.poll() is None
            if sub.poll(100):
                msg = m.decode(sub.recv_multipart(copy=False))
                pred, latency = m.decode_predictions(msg)
                received.append((msg.seq, pred.window_seq.tolist(), pred.window_crc.tolist(), running))
            elif not running:
                break
        out, err = run.communicate(timeout=60)
    finally:
        kill(run)
        ctx.destroy(linger=0)
    assert run.returncode == 0, out + err
    assert received, "no prediction message reached the subscriber"
    assert received[0][3], "the first message arrived only after the pipeline had ended"
    seqs = [r[0] for r in received]
    assert seqs == sorted(set(seqs))                                   # message seqs increase
    windows = [w for r in received for w in r[1]]
    assert windows == sorted(set(windows))                             # window seqs increase
    # The subscriber was connected before the first message: it got every window, as the jsonl.
    rows = read_rows(tmp_path / "preds.jsonl")
    assert windows == [r["window"] for r in rows]
    assert [c for r in received for c in r[2]] == [r["window_crc"] for r in rows]
    assert json.loads((tmp_path / "summary.json").read_text())["ok"] is True


# ------------------------------------------------------------------------------------------ 5. errors

def test_pipeline_file_with_unknown_key_is_an_error_naming_file_and_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('speed = "max"\n[[sources]]\nspec = "replay:dsads:p6"\nchanels = ["T.*"]\n')
    r = streamhar("run", "--config", str(cfg), "--no-view", "--data-dir", str(DATA), cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"pipeline file {cfg} [[sources]]: unknown key(s) chanels" in r.stderr
    assert "channels" in r.stderr                      # the known keys are listed
    assert "Traceback" not in r.stderr


def test_replay_of_missing_opportunity_says_what_is_missing_and_how_to_get_it(tmp_path):
    data = tmp_path / "data"                           # the other data sets, no OPPORTUNITY
    data.mkdir()
    for name in ("dsads", "usc-had"):
        (data / name).symlink_to(DATA / name)
    r = streamhar("run", "--source", "replay:opportunity", "--no-view", "--data-dir", str(data), cwd=tmp_path,
                  timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    err = " ".join(r.stderr.split())
    assert "replay:opportunity cannot run: missing the OPPORTUNITY recordings" in err
    assert str(data / "opportunity") in err
    assert "`streamhar data fetch opportunity`" in err
    assert "`streamhar train --dataset opportunity" in err
    assert "Traceback" not in r.stderr
