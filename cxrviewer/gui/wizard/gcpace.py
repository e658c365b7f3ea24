"""No full garbage collections while a wizard job allocates heavily (no Qt).

CPython's full (generation 2) collection walks every tracked object that is not frozen
and holds the GIL throughout, on whichever thread happens to allocate. Reading the
112,120-row NIH CSV (one list per row) allocates fast enough to trigger several over a
growing heap: measured on this 2-core machine, 60-250 ms each, and the window cannot
repaint meanwhile. Inside ``no_full_collections`` only the young generations are
collected automatically (each pass is short: their size is bounded); the rows are freed
by reference counting when the reader returns, and the old generation is collected
later as usual.
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
