"""What a frozen build was made from: one hash over its inputs, and ``build-info.json``.

The hash covers the spec, this folder, the package source, ``resources/``, ``models/`` and
the installed distributions (name and version) of the Python that builds. A build whose
``build-info.json`` carries the current hash is up to date and may be reused.

    python packaging/build_stamp.py                  # print the current hash
    python packaging/build_stamp.py --check DIR      # exit 0 if DIR/build-info.json matches
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INFO_NAME = "build-info.json"
_INPUTS = ("build.spec", "packaging", "cxrviewer", "resources", "models")
_SKIP_PARTS = {"__pycache__"}


def _input_files(root: Path):
    for name in _INPUTS:
        top = root / name
        if top.is_file():
            yield top
        elif top.is_dir():
            for path in sorted(top.rglob("*")):
                if path.is_file() and not _SKIP_PARTS.intersection(path.parts) and path.suffix != ".pyc":
                    yield path


def inputs_sha256(root: Path = ROOT) -> str:
    h = hashlib.sha256()
    for path in _input_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    # The environment's site-packages, not sys.path: PyInstaller adds setuptools' vendored
    # packages to sys.path during a build, which would change the list mid-build.
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions(path=site))
    h.update("\n".join([sys.version, *dists]).encode())
    return h.hexdigest()


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-modified" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_build_info(app_dir: Path, version: str, root: Path = ROOT, inputs: str | None = None) -> Path:
    """Write ``app_dir/build-info.json``: version, commit, date, Python, inputs hash
    (``inputs``: the hash taken when the build started; computed now if not given)."""
    info = {
        "name": "cxrviewer",
        "version": version,
        "git_commit": _git_commit(root),
        "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "inputs_sha256": inputs or inputs_sha256(root),
    }
    path = Path(app_dir) / INFO_NAME
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return path


def is_current(app_dir: Path, root: Path = ROOT) -> bool:
    """True when ``app_dir`` holds a complete build made from the current inputs."""
    app_dir = Path(app_dir)
    try:
        info = json.loads((app_dir / INFO_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (app_dir / "cxrviewer").is_file() and info.get("inputs_sha256") == inputs_sha256(root)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(0 if is_current(Path(sys.argv[2])) else 1)
    print(inputs_sha256())
