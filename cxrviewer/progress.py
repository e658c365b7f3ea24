"""Showing a long run's progress: films/s and ETA as a bar on a terminal, periodic lines in a log.

Independent of what is being counted: a reporter receives objects with ``done``, ``total``
(None while still unknown), ``films_per_s`` and ``eta_s`` (None when unknown) and, when they
have them, ``errors`` and ``warnings`` counts and a ``message`` to show once.
"""

from __future__ import annotations

import collections
import sys
import time


class RateMeter:
    """Films per second over the last ``window_s`` seconds (a sliding window).

    A sliding window follows the current speed (a slow first batch while TensorFlow warms up,
    a faster disk later) while staying steady batch to batch.
    """

    def __init__(self, window_s: float = 30.0, clock=time.monotonic):
        self.window_s = float(window_s)
        self._clock = clock
        self._marks: collections.deque[tuple[float, int]] = collections.deque()
        self._start = clock()
        self._marks.append((self._start, 0))

    def update(self, done: int) -> None:
        now = self._clock()
        self._marks.append((now, int(done)))
        # Keep one mark older than the window so the span always covers it.
        while len(self._marks) > 2 and now - self._marks[1][0] >= self.window_s:
            self._marks.popleft()

    @property
    def rate(self) -> float | None:
        (t0, d0), (t1, d1) = self._marks[0], self._marks[-1]
        if d1 <= d0 or t1 <= t0:
            return None
        return (d1 - d0) / (t1 - t0)

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._start

    def eta_s(self, done: int, total: int | None) -> float | None:
        rate = self.rate
        if total is None or not rate:
            return None
        return max(0, total - done) / rate


def format_duration(seconds: float | None) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour); ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe(p, *, bar_width: int = 0) -> str:
    """One line: ``[bar] 37/100 films (37%) 4.2 films/s ETA 0:15, 1 warning, 2 errors``."""
    parts = []
    if p.total:
        frac = min(1.0, p.done / p.total)
        if bar_width:
            filled = int(round(frac * bar_width))
            parts.append("[" + "#" * filled + "." * (bar_width - filled) + "]")
        parts.append(f"{p.done}/{p.total} films ({frac * 100:.0f}%)")
    else:
        parts.append(f"{p.done} films" + ("" if p.total == 0 else " (counting)"))
    rate = getattr(p, "films_per_s", None)
    parts.append(f"{rate:.1f} films/s" if rate else "-- films/s")
    if p.total:
        parts.append(f"ETA {format_duration(getattr(p, 'eta_s', None))}")
    line = " ".join(parts)
    counts = []
    for name in ("warnings", "errors"):
        n = getattr(p, name, 0) or 0
        if n:
            counts.append(f"{n} {name[:-1] if n == 1 else name}")
    return line + (", " + ", ".join(counts) if counts else "")


class ProgressPrinter:
    """A progress callback for the command line.

    On a terminal: one line redrawn in place (at most ``redraw_s`` apart) with a bar, films/s
    and ETA. Otherwise (a log file, a job scheduler's output): a plain line every
    ``interval_s`` seconds or every ``every`` films, whichever comes first, so logs stay short
    but show the run is alive. Messages (errors, notes) are printed on their own lines.
    """

    def __init__(self, stream=None, *, prefix: str = "score", interval_s: float = 10.0,
                 every: int = 500, redraw_s: float = 0.2, tty: bool | None = None, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) if tty is None else bool(tty)
        self.prefix = prefix
        self.interval_s = interval_s
        self.every = max(1, int(every))
        self.redraw_s = redraw_s
        self._clock = clock
        self._last_time = None
        self._last_done = 0
        self._drawn = False
        self._last = None

    def message(self, text: str) -> None:
        """A line of its own (e.g. a file's error) that does not break the bar."""
        self._line(text)
        if self.tty and self._last is not None:
            self._draw(self._last)
        self.stream.flush()

    def _line(self, text: str) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[2K")  # clear the bar; it is drawn again below the line
        self.stream.write(f"{self.prefix}: {text}\n")
        self._drawn = False

    def __call__(self, p) -> None:
        self._last = p
        msg = getattr(p, "message", None)
        if msg:
            self._line(msg)
        now = self._clock()
        if self.tty:
            if (self._last_time is None or now - self._last_time >= self.redraw_s or self._finished(p)
                    or not self._drawn):
                self._draw(p)
                self._last_time = now
            return
        due = (self._last_time is None or now - self._last_time >= self.interval_s
               or p.done - self._last_done >= self.every or self._finished(p))
        if due and (p.done != self._last_done or self._last_time is None):
            self.stream.write(f"{self.prefix}: {describe(p)}\n")
            self.stream.flush()
            self._last_time, self._last_done = now, p.done

    def close(self) -> None:
        """End the bar's line (call once the run is over)."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    @staticmethod
    def _finished(p) -> bool:
        return bool(p.total) and p.done >= p.total

    def _draw(self, p) -> None:
        self.stream.write(f"\r\x1b[2K{self.prefix}: {describe(p, bar_width=24)}")
        self.stream.flush()
        self._drawn = True
