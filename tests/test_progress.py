"""Progress display: films/s over a sliding window, ETA, terminal bar vs plain log lines."""

from __future__ import annotations

import io

import pytest

from cxrviewer.batch import ScoreProgress
from cxrviewer.progress import ProgressPrinter, RateMeter, describe, format_duration


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_rate_follows_the_recent_window_and_eta_uses_it():
    clock = Clock()
    meter = RateMeter(window_s=10, clock=clock)
    assert meter.rate is None and meter.eta_s(0, 100) is None
    for k in range(1, 11):  # 1 film/s for 10 s
        clock.t += 1
        meter.update(k)
    assert meter.rate == pytest.approx(1.0)
    for k in range(1, 21):  # then 4 films/s for 5 s: the old pace leaves the window
        clock.t += 0.25
        meter.update(10 + k)
    clock.t += 5
    meter.update(30 + 20)
    assert meter.rate == pytest.approx(4.0, rel=0.35)
    assert meter.eta_s(50, 90) == pytest.approx(40 / meter.rate)
    assert meter.eta_s(50, None) is None


def test_format_duration():
    assert format_duration(None) == "--:--"
    assert format_duration(65) == "1:05"
    assert format_duration(3725) == "1:02:05"


def test_describe_with_and_without_total():
    p = ScoreProgress(done=30, total=100, films_per_s=5.0, eta_s=15, warnings=1, errors=2)
    text = describe(p, bar_width=10)
    assert "30/100 films (30%)" in text and "5.0 films/s" in text and "ETA 0:15" in text
    assert "1 warning," in text and "2 errors" in text and "[###.......]" in text
    assert "(counting)" in describe(ScoreProgress(done=3, total=None, films_per_s=None, eta_s=None))


def test_plain_lines_when_not_a_terminal_are_periodic():
    clock, out = Clock(), Stream(tty=False)
    printer = ProgressPrinter(out, interval_s=10, every=1000, clock=clock)
    for k in range(1, 101):  # 100 films over 50 s
        clock.t += 0.5
        printer(ScoreProgress(done=k, total=100, films_per_s=2.0, eta_s=(100 - k) / 2))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 5 <= len(lines) <= 7  # first film, every 10 s, and the last
    assert lines[0].startswith("score: 1/100 films") and lines[-1].startswith("score: 100/100 films (100%)")
    printer.message("bad/x.dcm: failed: truncated")
    assert out.getvalue().endswith("score: bad/x.dcm: failed: truncated\n")


def test_bar_redrawn_in_place_on_a_terminal():
    clock, out = Clock(), Stream(tty=True)
    printer = ProgressPrinter(out, redraw_s=0.0, clock=clock)
    printer(ScoreProgress(done=1, total=4, films_per_s=2.0, eta_s=1.5))
    printer(ScoreProgress(done=2, total=4, films_per_s=2.0, eta_s=1.0, message="note: something"))
    printer(ScoreProgress(done=4, total=4, films_per_s=2.0, eta_s=0.0))
    printer.close()
    text = out.getvalue()
    assert text.count("\r") >= 3 and "4/4 films (100%)" in text and "ETA 0:00" in text
    assert "score: note: something\n" in text and text.endswith("\n")
