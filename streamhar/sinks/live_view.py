"""The pipeline's live view: a small panel redrawn in place on a terminal, a plain line in a log.

`draw(snap, now)` takes a `RunningMetrics.snapshot()` plus the keys the pipeline adds ("title",
"stages": {name: {"dropped", "gaps", …}}, "threshold", and for a device-tier cascade "radio": the
bytes its device sent vs the SAMPLES stream they replaced) and the caller's clock; it throttles
itself (≈4×/s on a terminal, one line per 5 s otherwise), so the pipeline may call it every batch.
On a terminal the cursor always rests below the panel: each redraw moves up over the previous one
and rewrites it line by line, so anything printed before stays, and `close()` leaves the last
panel in place. Logs get no ANSI codes at all (they end up in CI output and files).
"""
from __future__ import annotations

import re
import shutil
import sys

_ANSI = re.compile(r"(\x1b\[[0-9;?]*[A-Za-z])")
BOLD, DIM, RED, YELLOW, GREEN, CYAN, RESET = (f"\x1b[{c}m" for c in ("1", "2", "31", "33", "32", "36", "0"))
BLOCKS = " ▏▎▍▌▋▊▉█"        # eighths, so a 16-cell bar moves in 1/128 steps


def bar(fraction: float, cells: int = 16) -> str:
    eighths = round(max(0.0, min(1.0, fraction)) * cells * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(cells, "░")


def fit(line: str, width: int) -> str:
    """Cut a line to `width` visible characters; escape codes take no room and are kept."""
    out, seen = [], 0
    for piece in _ANSI.split(line):
        if _ANSI.fullmatch(piece):
            out.append(piece)
        elif seen + len(piece) > width:
            out.append(piece[:width - seen] + RESET)
            break
        else:
            out.append(piece)
            seen += len(piece)
    return "".join(out)


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _ms(lat: dict | None, key: str) -> str:
    return "–" if not lat else f"{lat[key]:.1f} ms"


class LiveView:
    def __init__(self, out=None, enabled: bool = True, tty: bool | None = None,
                 interval: float | None = None):
        self.out = sys.stderr if out is None else out
        self.enabled = enabled
        self.tty = bool(getattr(self.out, "isatty", lambda: False)()) if tty is None else tty
        self.interval = (0.25 if self.tty else 5.0) if interval is None else interval
        self._last: float | None = None
        self._height = 0           # lines of the panel now on screen (the cursor is below them)

    def draw(self, snap: dict, now: float, force: bool = False) -> None:
        if not self.enabled or (not force and self._last is not None and now - self._last < self.interval):
            return
        self._last = now
        if not self.tty:
            self.out.write(self.line(snap) + "\n")
        else:
            width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)   # last column would wrap
            lines = [fit(x, width) for x in self.panel(snap)]
            lines += [""] * (self._height - len(lines))     # blank out rows a taller panel left
            up = f"\x1b[{self._height}A" if self._height else ""
            self.out.write(up + "".join(f"\r\x1b[2K{x}\n" for x in lines))
            self._height = len(lines)
        self.out.flush()

    def close(self) -> None:
        # the cursor already rests below the panel; forget it so nothing redraws over it
        self._height = 0
        if self.enabled:
            self.out.flush()

    @staticmethod
    def _stages(snap: dict, color: bool) -> list[str]:
        out = []
        for name, st in (snap.get("stages") or {}).items():
            d, g = int(st.get("dropped", 0)), int(st.get("gaps", 0))
            if not color:
                out.append(f"{name} drop {d} gap {g}")
                continue
            ds = f"{RED}{BOLD}drop {d}{RESET}" if d else f"{DIM}drop 0{RESET}"
            gs = f"{YELLOW}{BOLD}gap {g}{RESET}" if g else f"{DIM}gap 0{RESET}"
            out.append(f"{name} {ds} {gs}")
        return out

    def panel(self, s: dict) -> list[str]:
        lat = s.get("latency_ms")
        head = f"{BOLD}{CYAN}streamhar{RESET} {s.get('title', '')}"
        if not s.get("windows"):
            return [head, f"  {DIM}waiting for the first window…{RESET}"]
        conf = s.get("confidence") or 0.0
        tone = GREEN if conf >= 0.5 else YELLOW if conf >= 0.2 else RED
        now = f"  ▶ {BOLD}{s['current'] or '?':<18}{RESET} {tone}{bar(conf)}{RESET} {conf:.2f}"
        if s.get("truth"):
            ok = s["truth"] == s["current"]
            now += f"   truth {s['truth']} " + (f"{GREEN}✓{RESET}" if ok else f"{RED}✗{RESET}")
        acc = (f"accuracy {BOLD}{_pct(s['accuracy'])}{RESET}  macro-F1 {BOLD}{s['macro_f1']:.3f}{RESET}  "
               f"{DIM}({s['labelled']:,} labelled){RESET}") if s.get("accuracy") is not None \
            else f"{DIM}no ground truth{RESET}"
        stages = self._stages(s, color=True)
        device = self._device(s)
        return [head, now,
                f"  escalated {_pct(s['escalation_rate_recent'])} recent · {_pct(s['escalation_rate'])} overall"
                f"   threshold {s.get('threshold', '–')}",
                f"  {s['windows_per_s']:,.1f} windows/s   latency p50 {_ms(lat, 'p50')}  p99 {_ms(lat, 'p99')}"
                f"   {s['windows']:,} windows   {DIM}{s.get('recording') or ''}{RESET}",
                f"  {acc}"] + ([f"  {device}"] if device else []) + (["  " + "   ".join(stages)] if stages else [])

    @staticmethod
    def _device(s: dict) -> str:
        """The device-tier cascade's split and what it saved on the radio ('' for a host-only run)."""
        d = s.get("device")
        if not d:
            return ""
        out = f"device tier: {d['committed']:,} committed on the device · {d['escalated']:,} escalated to the host"
        radio = s.get("radio")
        if radio and radio.get("samples_stream_bytes"):
            saved = radio["saved_bytes"]
            out += (f" · radio {radio['bytes'] / 1e3:,.1f} kB, {'saved' if saved >= 0 else 'cost'} "
                    f"{abs(saved) / 1e3:,.1f} kB ({abs(radio['saved_fraction']) * 100:.0f} %) vs samples")
        return out

    def line(self, s: dict) -> str:
        """The panel's facts on one plain line, for logs."""
        if not s.get("windows"):
            return f"[streamhar] {s.get('title', '')}: waiting for the first window"
        lat = s.get("latency_ms")
        parts = [f"{s['windows']} windows", f"now {s['current']} ({(s.get('confidence') or 0):.2f})"]
        if s.get("truth"):
            parts.append(f"truth {s['truth']} " + ("ok" if s["truth"] == s["current"] else "MISS"))
        parts += [f"escalated {_pct(s['escalation_rate_recent'])} recent {_pct(s['escalation_rate'])} overall",
                  f"{s['windows_per_s']:.1f} windows/s", f"p50 {_ms(lat, 'p50')} p99 {_ms(lat, 'p99')}"]
        if s.get("accuracy") is not None:
            parts.append(f"accuracy {_pct(s['accuracy'])} macro-F1 {s['macro_f1']:.3f}")
        if self._device(s):
            parts.append(self._device(s))
        parts += self._stages(s, color=False)
        return "[streamhar] " + " | ".join(parts)
