"""Checkpoints in torch.save's zip layout written without torch, for the import tests.

The pickle is assembled opcode by opcode (protocol 2, the one torch.save uses) so tests of
the importer run where torch is not installed; real torch.save files are covered by the
equivalence tests, which need torch.
"""

from __future__ import annotations

import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

_STORAGE_TYPES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage",
                  np.dtype("float16"): "HalfStorage"}


def _pickle_with_tensors(obj, device: str = "cpu", old: bool = False,
                         order: str = "<") -> tuple[bytes, dict[str, np.ndarray]]:
    """Protocol-2 pickle of ``obj`` with arrays as tensors; ``old``: torch 0.3's pickle
    (``_rebuild_tensor`` with 4 arguments, 6-field storage ids)."""
    out = bytearray(b"\x80\x02")
    storages: dict[str, np.ndarray] = {}

    def glob(module: str, name: str):
        out.extend(b"c" + f"{module}\n{name}\n".encode())

    def put(x):
        if isinstance(x, dict):
            glob("collections", "OrderedDict")
            out.extend(b")R")
            if x:
                out.extend(b"(")
                for k, v in x.items():
                    put(k)
                    put(v)
                out.extend(b"u")
        elif isinstance(x, np.ndarray):
            arr = np.ascontiguousarray(x)
            key = str(len(storages))
            storages[key] = arr.astype(arr.dtype.newbyteorder(order))
            glob("torch._utils", "_rebuild_tensor" if old else "_rebuild_tensor_v2")
            out.extend(b"((")
            put("storage")
            glob("torch" if device == "cpu" else "torch.cuda", _STORAGE_TYPES[arr.dtype])
            put(key)
            put(device)
            put(int(arr.size))
            if old:
                out.extend(b"N")  # view metadata: none
            out.extend(b"tQ")  # persistent id tuple -> BINPERSID
            put(0)
            put(tuple(int(s) for s in arr.shape))
            put(tuple(int(s) // arr.itemsize for s in arr.strides))
            if not old:
                put(False)
                put({})
            out.extend(b"tR")
        elif isinstance(x, bool):
            out.extend(b"\x88" if x else b"\x89")
        elif isinstance(x, int):
            out.extend(b"J" + struct.pack("<i", x))
        elif isinstance(x, float):
            out.extend(b"G" + struct.pack(">d", x))
        elif isinstance(x, str):
            raw = x.encode()
            out.extend(b"X" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(x, tuple):
            out.extend(b"(")
            for v in x:
                put(v)
            out.extend(b"t")
        else:
            raise TypeError(f"cannot write {type(x).__name__}")

    put(obj)
    out.extend(b".")
    return bytes(out), storages


def save_like_torch(obj, path: Path, device: str = "cpu") -> Path:
    """Write ``obj`` (dicts, tuples, scalars, NumPy arrays as tensors) as torch.save would.

    ``device="cuda:0"`` names the CUDA storage types, as a checkpoint saved from a GPU does.
    """
    data, storages = _pickle_with_tensors(obj, device)
    root = Path(path).stem or "archive"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{root}/data.pkl", data)
        zf.writestr(f"{root}/byteorder", "little")
        for key, raw in storages.items():
            zf.writestr(f"{root}/data/{key}", raw.tobytes())
        zf.writestr(f"{root}/version", "3\n")
    return Path(path)


def save_like_old_torch(obj, path: Path, device: str = "cuda:0", little_endian: bool = True) -> Path:
    """The pre-1.6 layout a CheXNet-era ``model.pth.tar`` has (torch 0.3 pickle, GPU storages).

    Pickles of the magic number, protocol and system info, then the object, then the storage
    keys; then each storage as an int64 element count and its bytes, in the saver's byte order.
    """
    import pickle

    order = "<" if little_endian else ">"
    data, storages = _pickle_with_tensors(obj, device, old=True, order=order)
    with open(path, "wb") as fh:
        for head in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": little_endian,
                                                   "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(head, fh, protocol=2)
        fh.write(data)
        pickle.dump(list(storages), fh, protocol=2)
        for raw in storages.values():
            fh.write(struct.pack(f"{order}q", raw.size))
            fh.write(raw.tobytes())
    return Path(path)


def densenet121_state_dict(in_channels: int, n_outputs: int, seed: int = 0) -> "OrderedDict[str, np.ndarray]":
    """A random torchvision-layout DenseNet121 state dict (growth 32, blocks 6/12/24/16)."""
    rng = np.random.default_rng(seed)
    sd: OrderedDict[str, np.ndarray] = OrderedDict()

    def conv(name, cout, cin, k):
        sd[f"{name}.weight"] = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype("f4")

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c).astype("f4")
        sd[f"{name}.bias"] = rng.uniform(-0.2, 0.2, c).astype("f4")
        sd[f"{name}.running_mean"] = rng.uniform(-0.2, 0.2, c).astype("f4")
        sd[f"{name}.running_var"] = rng.uniform(0.5, 2.0, c).astype("f4")
        sd[f"{name}.num_batches_tracked"] = np.array(100, dtype=np.int64)

    conv("features.conv0", 64, in_channels, 7)
    bn("features.norm0", 64)
    c = 64
    for b, n in enumerate((6, 12, 24, 16), start=1):
        for i in range(1, n + 1):
            p = f"features.denseblock{b}.denselayer{i}"
            cin = c + (i - 1) * 32
            bn(f"{p}.norm1", cin)
            conv(f"{p}.conv1", 128, cin, 1)
            bn(f"{p}.norm2", 128)
            conv(f"{p}.conv2", 32, 128, 3)
        c += 32 * n
        if b < 4:
            bn(f"features.transition{b}.norm", c)
            conv(f"features.transition{b}.conv", c // 2, c, 1)
            c //= 2
    bn("features.norm5", c)
    sd["classifier.weight"] = (rng.standard_normal((n_outputs, c)) * 0.05).astype("f4")
    sd["classifier.bias"] = (rng.standard_normal(n_outputs) * 0.1).astype("f4")
    return sd
