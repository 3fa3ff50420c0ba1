"""The sink stage's pure parts: running metrics, the live view and the JSON-lines writer."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest

from streamhar.errors import StreamharError
from streamhar.evaluation.metrics import confusion, scores
from streamhar.inference.stage import PredictionBatch
from streamhar.sinks.jsonl import JsonLinesWriter, read_jsonl
from streamhar.sinks.live_view import LiveView, fit
from streamhar.sinks.metrics import RunningMetrics

NAMES = ["sitting", "standing", "walking", "running"]
ANSI = re.compile(r"\x1b\[")


def batch(n: int, rng: np.random.Generator, start: int = 0, rec: str = "p1", unknown: float = 0.2):
    labels = rng.integers(0, len(NAMES), n).astype(np.int16)
    labels[rng.random(n) < unknown] = -1
    classes = np.where(rng.random(n) < 0.7, labels, rng.integers(0, len(NAMES), n)).astype(np.int16)
    classes[classes < 0] = 2
    esc = rng.random(n) < 0.3
    return PredictionBatch(np.arange(start, start + n, dtype=np.int64), rec,
                           np.arange(start, start + n) * 0.5 + 2.0, labels, classes,
                           rng.integers(0, 90000, n).astype(np.int64), rng.random(n).astype(np.float32),
                           esc, np.where(esc, 5000, 1000).astype(np.int64),
                           rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32))


def cat(batches, key):
    return np.concatenate([getattr(b, key) for b in batches])


def test_running_metrics_match_offline_scores_over_all_batches():
    rng = np.random.default_rng(0)
    sizes = [0, 7, 1, 300, 0, 5000, 42]             # grows the latency buffer past its start size
    batches, lats, start = [], [], 0
    m = RunningMetrics(NAMES)
    for i, n in enumerate(sizes):
        b, lat = batch(n, rng, start), rng.gamma(2.0, 0.004, n)
        m.update(b, lat, now=float(i))
        batches.append(b)
        lats.append(lat)
        start += n
    y, p, lat = cat(batches, "labels"), cat(batches, "classes"), np.concatenate(lats)
    known = y >= 0
    assert 0 < known.sum() < len(y)
    want = scores(confusion(y[known], p[known], len(NAMES)), NAMES)
    s, snap = m.summary(), m.snapshot(now=10.0)
    for key in ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion"):
        assert s[key] == want[key]
    assert snap["accuracy"] == want["accuracy"] and snap["macro_f1"] == want["macro_f1"]
    assert s["labelled"] == snap["labelled"] == known.sum()
    # unlabelled windows are not scored as wrong: accuracy over all windows would differ
    assert want["accuracy"] != pytest.approx(float((y == p).mean()))
    ms = lat * 1e3
    assert s["latency_ms"] == pytest.approx({"p50": np.percentile(ms, 50), "p90": np.percentile(ms, 90),
                                             "p99": np.percentile(ms, 99), "max": ms.max(),
                                             "mean": ms.mean()})
    assert snap["latency_ms"] == pytest.approx({"p50": np.percentile(ms, 50), "p99": np.percentile(ms, 99),
                                                "max": ms.max()})
    esc = cat(batches, "escalated")
    assert s["windows"] == snap["windows"] == len(y) == sum(sizes)
    assert s["escalated"] == esc.sum() and s["escalation_rate"] == pytest.approx(esc.mean())
    assert snap["escalation_rate_recent"] == pytest.approx(esc[-100:].mean())
    assert s["macs"] == cat(batches, "macs").sum()
    assert s["macs_per_window"] == pytest.approx(cat(batches, "macs").mean())
    last = batches[-1]
    assert snap["current"] == NAMES[last.classes[-1]]
    assert snap["confidence"] == pytest.approx(float(last.prob_margins[-1]))
    assert snap["truth"] == (NAMES[last.labels[-1]] if last.labels[-1] >= 0 else None)


def test_recent_escalation_rate_follows_the_last_hundred_windows():
    rng = np.random.default_rng(1)
    m = RunningMetrics(NAMES)
    for i, esc in enumerate([True, False, False]):       # 150 escalated, then 2 × 60 not
        n = 150 if esc else 60
        b = batch(n, rng)
        b.escalated[:] = esc
        m.update(b, np.zeros(n), now=i)
    snap = m.snapshot(now=3)
    assert snap["escalation_rate"] == pytest.approx(150 / 270)
    assert snap["escalation_rate_recent"] == pytest.approx(0.0)
    b = batch(30, rng)
    b.escalated[:] = True
    m.update(b, np.zeros(30), now=4)
    assert m.snapshot(now=4)["escalation_rate_recent"] == pytest.approx(0.3)


def test_windows_per_second_over_the_rate_window():
    rng = np.random.default_rng(2)
    m = RunningMetrics(NAMES, rate_window_s=2.0)
    assert m.snapshot(now=0.0)["windows_per_s"] == 0.0
    for k in range(50):                                  # 10 windows every 0.1 s for 5 s: 100/s
        m.update(batch(10, rng), np.zeros(10), now=0.1 * k)
    assert m.snapshot(now=4.9)["windows_per_s"] == pytest.approx(100.0, rel=1e-6)
    # the stream stops: after 1 s of silence only half the window holds updates; after 2 s none
    assert m.snapshot(now=5.9)["windows_per_s"] == pytest.approx(50.0, rel=0.05)
    assert m.snapshot(now=7.0)["windows_per_s"] == 0.0
    young = RunningMetrics(NAMES, rate_window_s=2.0)    # younger than the window: rate over its age
    young.update(batch(10, rng), np.zeros(10), now=0.0)
    young.update(batch(10, rng), np.zeros(10), now=0.5)
    assert young.snapshot(now=0.5)["windows_per_s"] == pytest.approx(40.0)


def test_empty_batches_and_no_labels():
    rng = np.random.default_rng(3)
    m = RunningMetrics(NAMES)
    m.update(batch(0, rng), np.zeros(0), now=0.0)
    s, snap = m.summary(), m.snapshot(now=1.0)
    assert s["windows"] == 0 and s["latency_ms"] is None and "accuracy" not in s
    assert snap["current"] is None and snap["accuracy"] is None and snap["latency_ms"] is None
    m.update(batch(20, rng, unknown=1.0), np.full(20, 0.01), now=1.0)
    s, snap = m.summary(), m.snapshot(now=1.0)
    assert s["labelled"] == 0 and "macro_f1" not in s and snap["macro_f1"] is None and snap["truth"] is None
    assert s["latency_ms"]["p50"] == pytest.approx(10.0)
    with pytest.raises(ValueError):
        m.update(batch(3, rng), np.zeros(2), now=2.0)


def test_jsonl_round_trips_every_field(tmp_path):
    rng = np.random.default_rng(4)
    b1, b2 = batch(25, rng, 0, "p1"), batch(17, rng, 25, 'p"2')
    lat1, lat2 = rng.random(25) * 0.01, rng.random(17) * 0.01
    path = tmp_path / "preds.jsonl"
    with JsonLinesWriter(path) as w:
        w.write(b1, lat1, NAMES)
        w.write(batch(0, rng), np.zeros(0), NAMES)
        w.write(b2, lat2, NAMES)
        assert w.lines == 42
        assert len(path.read_text().splitlines()) == 42          # flushed: a reader sees whole lines
    rows = read_jsonl(path)
    assert len(rows) == 42 and path.read_text().endswith("\n")
    lat = np.concatenate([lat1, lat2])
    for i, r in enumerate(rows):
        b, j = (b1, i) if i < 25 else (b2, i - 25)
        y = int(b.labels[j])
        assert r == {"window": int(b.window_seq[j]), "recording": b.recording_id, "t_last": float(b.t_last[j]),
                     "class": NAMES[b.classes[j]], "class_index": int(b.classes[j]),
                     "label": NAMES[y] if y >= 0 else None, "label_index": y, "margin": int(b.margins[j]),
                     "prob_margin": round(float(b.prob_margins[j]), 6),
                     "path": "escalated" if b.escalated[j] else "small", "macs": int(b.macs[j]),
                     "latency_ms": round(float(lat[i]) * 1e3, 3), "window_crc": int(b.window_crc[j])}
    assert {r["path"] for r in rows} == {"small", "escalated"} and None in {r["label"] for r in rows}


def test_jsonl_errors_name_the_path(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "p.jsonl"
    with pytest.raises(StreamharError, match=re.escape(str(missing))):
        JsonLinesWriter(missing)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"window": 0}\n\n{oops\n')
    with pytest.raises(StreamharError, match="line 3"):
        read_jsonl(bad)


def snap(**extra):
    rng = np.random.default_rng(5)
    m = RunningMetrics(NAMES)
    b = batch(40, rng)
    b.classes[-1], b.labels[-1] = 2, 3
    m.update(b, np.full(40, 0.004), now=1.0)
    s = m.snapshot(now=1.0)
    s.update({"title": "replay:dsads:p6 → bundled:dsads (lossless)", "threshold": "0.3",
              "stages": {"source": {"dropped": 0, "gaps": 0}, "infer": {"dropped": 7, "gaps": 3}}}, **extra)
    return s


def test_live_view_plain_lines_respect_the_interval():
    out = io.StringIO()
    view = LiveView(out, tty=False)
    assert view.interval == 5.0
    for t in (0.0, 1.0, 4.9, 5.0, 7.0, 10.1):
        view.draw(snap(), now=t)
    view.draw(snap(), now=10.2, force=True)
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4                                # t = 0, 5, 10.1 and the forced one
    assert not ANSI.search(out.getvalue())
    assert "walking" in lines[0] and "truth running MISS" in lines[0] and "infer drop 7 gap 3" in lines[0]


def test_live_view_panel_redraws_in_place_on_a_terminal():
    out = io.StringIO()
    view = LiveView(out, tty=True)
    view.draw(snap(), now=0.0)
    first = out.getvalue()
    assert "\x1b[1mwalking" in first and "✗" in first and "drop 7" in first and "gap 3" in first
    assert "\x1b[31m\x1b[1mdrop 7" in first and "\x1b[33m\x1b[1mgap 3" in first    # non-zero highlighted
    height = first.count("\n")
    assert 5 <= height <= 8 and not re.search(r"\x1b\[\d+A", first)
    view.draw(snap(), now=0.1)                            # throttled: under 0.25 s
    assert out.getvalue() == first
    view.draw(snap(), now=0.3)
    assert out.getvalue()[len(first):].startswith(f"\x1b[{height}A")
    view.close()


def test_live_view_fits_the_terminal_and_disabled_draws_nothing(monkeypatch):
    line = f"\x1b[1m{'x' * 30}\x1b[0m{'y' * 30}"
    cut = fit(line, 40)
    assert ANSI.sub("", re.sub(r"\x1b\[[0-9;]*m", "", cut)) == "x" * 30 + "y" * 10
    monkeypatch.setenv("COLUMNS", "30")
    out = io.StringIO()
    LiveView(out, tty=True).draw(snap(), now=0.0)
    for row in out.getvalue().split("\n"):
        assert len(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", row)) <= 29
    silent = io.StringIO()
    view = LiveView(silent, enabled=False, tty=True)
    view.draw(snap(), now=0.0, force=True)
    view.close()
    assert silent.getvalue() == ""
