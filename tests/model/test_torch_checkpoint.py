"""The torch-free checkpoint reader: refuses code, reads both layouts, honours strides and byte order.

The refusal tests write hostile pickles with the standard library only, so they run without
torch; the layout tests use real ``torch.save`` files and skip where torch is not installed.
"""

from __future__ import annotations

import os
import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.model.torch_checkpoint import LEGACY_MAGIC, LEGACY_PROTOCOL, CheckpointError, read_checkpoint


class _RunsCommand:
    """Unpickling this calls os.system: the shape of a real malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("1+1",))


def _zip_checkpoint(path: Path, obj) -> Path:
    """The zip layout torch.save writes, with an arbitrary object pickled as data.pkl."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    return path


def _legacy_checkpoint(path: Path, obj) -> Path:
    with open(path, "wb") as fh:
        for part in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"protocol_version": LEGACY_PROTOCOL, "little_endian": True},
                     obj, []):
            pickle.dump(part, fh, protocol=2)
    return path


@pytest.mark.skipif(sys.platform == "win32", reason="marker via POSIX touch")
@pytest.mark.parametrize("writer", [_zip_checkpoint, _legacy_checkpoint], ids=["zip", "legacy"])
def test_malicious_reduce_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    ckpt = writer(tmp_path / "evil.pt", {"state_dict": OrderedDict(), "payload": _RunsCommand(marker)})
    # control: the payload is live, a naive pickle.loads of the same object runs the command
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_RunsCommand(control), protocol=2))
    assert control.exists()
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(ckpt)
    msg = str(err.value)
    assert msg.startswith("evil.pt: refused")
    assert "system" in msg and "\n" not in msg
    assert not marker.exists()


def test_any_other_global_is_refused(tmp_path):
    ckpt = _zip_checkpoint(tmp_path / "eval.pt", {"x": _CallsEval()})
    with pytest.raises(CheckpointError, match=r"eval\.pt: refused.*(__builtin__|builtins)\.eval"):
        read_checkpoint(ckpt)


def test_not_a_checkpoint_is_one_clear_line(tmp_path, nih_png_dir):
    png = sorted(nih_png_dir.glob("*.png"))[0]
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(png)
    assert str(err.value) == f"{png.name}: not a PyTorch checkpoint (neither a torch.save zip nor the legacy format)"
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="data.pkl"):
        with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
            zf.writestr("readme.txt", "hello")
        read_checkpoint(tmp_path / "other.zip")


def test_plain_containers_need_no_globals(tmp_path):
    ckpt = _legacy_checkpoint(tmp_path / "plain.pt", {"epoch": 3, "arch": "densenet121", "lr": [0.1, 0.01]})
    got = read_checkpoint(ckpt)
    assert got.layout == "legacy"
    assert got.content == {"epoch": 3, "arch": "densenet121", "lr": [0.1, 0.01]}


# ---- real torch.save files -----------------------------------------------------------------
def _tensors(torch):
    base = torch.randn(10, 10)
    return OrderedDict(
        dense=torch.randn(3, 4),
        transposed=torch.randn(5, 6).t(),  # non-contiguous strides
        sliced=base[2:5, 1:8:2],  # storage offset + step
        half=torch.randn(4).half(),
        bfloat=torch.randn(4).to(torch.bfloat16),
        scalar=torch.tensor(7),
        ints=torch.arange(5),
        flags=torch.tensor([True, False]),
        param=torch.nn.Parameter(torch.randn(2, 2)),
        empty=torch.zeros(0, 3),
    )


def _as_numpy(torch, t):
    t = t.detach()
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


@pytest.mark.parametrize("zip_layout", [True, False], ids=["zip", "legacy"])
def test_reads_torch_save_files_exactly(tmp_path, zip_layout):
    torch = pytest.importorskip("torch")
    tensors = _tensors(torch)
    path = tmp_path / "ck.pt"
    torch.save({"state_dict": tensors, "epoch": 2}, path, _use_new_zipfile_serialization=zip_layout)
    got = read_checkpoint(path)
    assert got.layout == ("zip" if zip_layout else "legacy")
    assert got.content["epoch"] == 2
    for key, ref in tensors.items():
        arr = got.content["state_dict"][key]
        np.testing.assert_array_equal(arr, _as_numpy(torch, ref), err_msg=key)
        assert arr.dtype.isnative


def test_big_endian_zip_is_byte_swapped(tmp_path):
    torch = pytest.importorskip("torch")
    little = tmp_path / "little.pt"
    ref = torch.randn(3, 5).t()
    torch.save({"w": ref, "i": torch.arange(4)}, little)
    # rewrite it as a big-endian machine would have saved it: swapped bytes, byteorder "big"
    with zipfile.ZipFile(little) as zf:
        parts = {name: zf.read(name) for name in zf.namelist()}
    big = tmp_path / "big.pt"
    with zipfile.ZipFile(big, "w") as out:
        for name, data in parts.items():
            if name.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in name:
                # storage 0 is the float tensor, 1 the int64 one (saved in that order)
                width = 4 if name.endswith("/0") else 8
                data = np.frombuffer(data, dtype=f"<u{width}").byteswap().tobytes()
            out.writestr(name, data)
    got = read_checkpoint(big).content
    np.testing.assert_array_equal(got["w"], ref.numpy())
    np.testing.assert_array_equal(got["i"], np.arange(4))


def test_tensor_reaching_past_its_storage_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.randn(4)}, path)
    with zipfile.ZipFile(path) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    pkl = next(n for n in parts if n.endswith("data.pkl"))
    # shape (4,) -> (40,): a hostile header asking NumPy to read past the 16 bytes stored
    parts[pkl] = parts[pkl].replace(b"K\x04\x85", b"K(\x85", 1)
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(bad, "w") as out:
        for name, data in parts.items():
            out.writestr(name, data)
    with pytest.raises(CheckpointError, match="past the end of storage"):
        read_checkpoint(bad)


def test_torch_free_writer_is_what_torch_reads(tmp_path):
    """The writer the torch-free import tests use produces files torch itself loads identically."""
    torch = pytest.importorskip("torch")
    from tests.model.torch_files import densenet121_state_dict, save_like_torch

    sd = densenet121_state_dict(1, 18)
    path = save_like_torch({"state_dict": sd, "epoch": 4, "tag": ("a", 1.5, True)}, tmp_path / "w.pt")
    theirs = torch.load(path, weights_only=True)
    ours = read_checkpoint(path).content
    assert theirs["epoch"] == ours["epoch"] == 4 and theirs["tag"] == ours["tag"] == ("a", 1.5, True)
    assert list(theirs["state_dict"]) == list(ours["state_dict"]) == list(sd)
    for key, arr in sd.items():
        np.testing.assert_array_equal(theirs["state_dict"][key].numpy(), arr)
        np.testing.assert_array_equal(ours["state_dict"][key], arr)


def test_checkpoint_saved_from_a_gpu_reads_on_cpu(tmp_path):
    from tests.model.torch_files import save_like_torch

    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = save_like_torch({"state_dict": {"w": weights}}, tmp_path / "gpu.pt", device="cuda:0")
    got = read_checkpoint(path)
    assert got.locations == {"cuda:0"}
    np.testing.assert_array_equal(got.content["state_dict"]["w"], weights)


@pytest.mark.parametrize("little_endian", [True, False], ids=["little", "big"])
def test_chexnet_era_legacy_file_reads(tmp_path, little_endian):
    """torch 0.3 pickles (_rebuild_tensor, CUDA storages) in the legacy layout, either byte order."""
    from tests.model.torch_files import save_like_old_torch

    weights = np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4)
    counts = np.array([5, 7], dtype=np.int64)
    path = save_like_old_torch({"epoch": 9, "state_dict": {"w": weights, "n": counts}}, tmp_path / "model.pth.tar",
                               little_endian=little_endian)
    got = read_checkpoint(path)
    assert got.layout == "legacy" and got.locations == {"cuda:0"} and got.content["epoch"] == 9
    np.testing.assert_array_equal(got.content["state_dict"]["w"], weights)
    np.testing.assert_array_equal(got.content["state_dict"]["n"], counts)
    assert got.content["state_dict"]["w"].dtype == np.dtype("float32")  # native order


def test_reading_never_imports_torch(tmp_path):
    """Even with torch installed, reading a checkpoint leaves it unimported (fresh interpreter)."""
    import subprocess

    from tests.model.torch_files import densenet121_state_dict, save_like_torch

    path = save_like_torch({"state_dict": densenet121_state_dict(1, 18)}, tmp_path / "w.pt")
    code = (
        "import sys\n"
        "from cxrviewer.model.import_torch import find_state_dict, normalise_keys\n"
        "from cxrviewer.model.torch_checkpoint import read_checkpoint\n"
        f"ck = read_checkpoint({str(path)!r})\n"
        "net, _ = normalise_keys(find_state_dict(ck.content, ck.path), ck.path)\n"
        "assert len(net) == 606, len(net)\n"
        "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, 'imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
