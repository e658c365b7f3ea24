"""Writing user-owned files: atomic replace, nothing left behind on failure, ordinary modes."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from cxrviewer.fsutil import atomic_path, file_sha256, write_json_atomic, write_text_atomic


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("the user's rows\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a file")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "the user's rows\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_temp_keeps_the_suffix_and_replaces_atomically(tmp_path):
    target = tmp_path / "sub" / "model.keras"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".keras" and tmp != target
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    write_json_atomic(tmp_path / "card.json", {"a": 1})
    assert (tmp_path / "card.json").read_text() == '{\n  "a": 1\n}\n'


def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path):
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "new.txt", "x")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640
        kept = tmp_path / "kept.txt"
        kept.write_text("y")
        os.chmod(kept, 0o604)
        write_text_atomic(kept, "z")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o604 and kept.read_text() == "z"
    finally:
        os.umask(old)


def test_file_sha256_reads_in_blocks(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # more than one block
    (tmp_path / "m.bin").write_bytes(data)
    assert file_sha256(tmp_path / "m.bin") == hashlib.sha256(data).hexdigest()
