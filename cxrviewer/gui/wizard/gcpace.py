"""Full garbage collections at chosen moments while the wizard's background work runs (no Qt).

CPython's full (generation 2) collection walks every tracked object that is not frozen
and holds the GIL throughout, on whichever thread happens to allocate. Reading the
112,120-row NIH CSV (a list per row) or drawing the report's figures allocates quickly
enough to trigger several of them over a large heap: measured on this 2-core machine,
60-300 ms each, and the window cannot repaint meanwhile. Inside ``no_full_collections``
only the young generations are collected automatically (their size is bounded, so each
pass is short); the old generation waits for ``collect_now``, which the training thread
calls once per epoch and once at the end of a run, when little new is alive.
"""

from __future__ import annotations

import contextlib
import gc
import threading

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None
NEVER = 1 << 30  # a generation-2 threshold no count reaches


@contextlib.contextmanager
def no_full_collections():
    """No automatic generation-2 collections until the outermost ``with`` exits (any thread)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(_saved[0], _saved[1], NEVER)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None


def collect_now() -> int:
    """A full collection now, from the calling (worker) thread; returns what it freed."""
    return gc.collect()
