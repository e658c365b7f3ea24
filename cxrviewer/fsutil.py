"""Writing user-owned files safely: temp file in the same folder, then atomic rename."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    """The process umask, read without changing it (os.umask sets as it reads, racing threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None):
    """Yield a temp path beside ``target``; on success it replaces ``target`` atomically.

    On any exception the temp file is removed and ``target`` is untouched, so a crash or
    Ctrl-C never leaves a half-written CSV, card or model where the user's file was.
    The temp name keeps the target's suffix (Keras insists on ``.keras``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix or target.suffix or ".tmp", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); the result is an ordinary user file, so give it
    # the mode a plain open() would (0666 less the umask), or keep the mode of the file it replaces.
    try:
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()
        os.chmod(tmp_path, mode)
    except OSError:
        pass
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_text_atomic(target: str | Path, text: str, encoding: str = "utf-8") -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def write_json_atomic(target: str | Path, obj) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (model files are tens of MB).

    The model identity in results CSVs and the source checksum in imported model cards.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
