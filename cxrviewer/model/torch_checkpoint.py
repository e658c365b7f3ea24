"""Read a PyTorch checkpoint's tensors into NumPy without importing torch or running its code.

``torch.save`` writes a pickle, and unpickling an arbitrary pickle runs whatever callables it
names: a checkpoint from the internet is a program. This reader resolves only the handful of
globals a state dict is made of (the tensor/parameter rebuild functions, storage type names and
``collections.OrderedDict``), each mapped to a stand-in written here, so no torch code and no
code named by the file ever runs. Anything else is refused with ``CheckpointError`` naming the
file and the global.

Both on-disk layouts are read:

* zip (torch >= 1.6): ``<root>/data.pkl`` plus one raw file per storage ``<root>/data/<key>``,
  and ``<root>/byteorder`` ("little"/"big"; absent means little);
* legacy (torch < 1.6, e.g. CheXNet-era ``model.pth.tar``): a run of pickles (magic number,
  protocol, system info, the object, the storage key list) followed by each storage as an
  int64 element count and its raw bytes, in the saving machine's byte order.

Tensors come back as NumPy arrays in native byte order, honouring storage offset, shape and
strides (views and non-contiguous tensors included); every stride is bounds-checked against
its storage before NumPy looks at the bytes.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Legacy-format constants (torch/serialization.py): the first pickles of a non-zip file.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage type name -> NumPy dtype of one element. BFloat16 has no NumPy dtype: it is
# read as uint16 and widened to float32 exactly (it is the top half of a float32).
STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "UntypedStorage": "u1",
}


class CheckpointError(ValueError):
    """The file is not a checkpoint this reader accepts; str() is one line naming the file."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


# ---- stand-ins for the few globals a state dict names --------------------------------------
# Every object the pickle can reach refuses BUILD (``__setstate__`` raises), so a file cannot
# rewrite the reader's own stand-ins or a storage's bounds after they are made.
class _Sealed:
    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"BUILD on {type(self).__name__}")


class StorageType(_Sealed):
    """Stand-in for ``torch.FloatStorage`` & co: only the element type matters here."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    @property
    def raw_dtype(self) -> np.dtype:
        code = STORAGE_DTYPES[self.name]
        return np.dtype("u2") if code == "bf16" else np.dtype(code)


class Storage(_Sealed):
    """One storage named by a persistent id; ``data`` (raw bytes) is filled in when read."""

    __slots__ = ("kind", "key", "numel", "location", "data", "byteorder")

    def __init__(self, kind: StorageType, key: str, numel: int, location: str, data: bytes | None = None):
        self.kind, self.key, self.numel, self.location = kind, key, numel, location
        self.data = data
        self.byteorder = "little"


class LazyTensor(_Sealed):
    """What ``_rebuild_tensor*`` returns while storages may still be unread (legacy layout)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Allowed(_Sealed):
    """An allowed global: calls our own function, never the one the file names."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    return data  # a Parameter is its tensor; requires_grad, hooks and state mean nothing here


def _ordered_dict(*args):
    # Pickles build an OrderedDict empty and add items with SETITEMS; refusing arguments
    # keeps any other object out of its constructor.
    if args:
        raise pickle.UnpicklingError("OrderedDict called with arguments")
    return OrderedDict()


ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): _Allowed(_ordered_dict),
    ("torch._utils", "_rebuild_tensor"): _Allowed(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Allowed(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Allowed(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Allowed(_rebuild_parameter),
}
for _name in STORAGE_DTYPES:
    ALLOWED_GLOBALS[("torch", _name)] = StorageType(_name)
    # checkpoints saved from a GPU (CheXNet's model.pth.tar) name the CUDA storage types
    ALLOWED_GLOBALS[("torch.cuda", _name)] = StorageType(_name)


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        self.qualname = f"{module}.{name}"
        super().__init__(self.qualname)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS; storages come from ``storage_for`` by persistent id."""

    def __init__(self, fh, storage_for):
        super().__init__(fh)
        self._storage_for = storage_for

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise pickle.UnpicklingError(f"persistent id of kind {kind!r} (only storages are accepted)")
        _, kind, key, location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views (pre-1.0 torch) are not supported")
        if not isinstance(kind, StorageType):
            raise pickle.UnpicklingError("storage without a known storage type")
        if not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError("storage with an invalid element count")
        return self._storage_for(kind, str(key), str(location), numel)


def _unpickle(path: Path, fh, storage_for):
    try:
        return _RestrictedUnpickler(fh, storage_for).load()
    except RefusedGlobal as exc:
        raise CheckpointError(
            path,
            f"refused: the file names the Python global '{exc.qualname}', which a state dict never needs "
            "(only tensors and plain containers are read; re-save a pickled model as model.state_dict())",
        ) from None
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, struct.error, MemoryError) as exc:
        raise CheckpointError(path, f"not a readable PyTorch checkpoint ({exc or type(exc).__name__})") from None


# ---- the two layouts ------------------------------------------------------------------------
def _read_zip(path: Path) -> tuple[object, dict[str, Storage]]:
    storages: dict[str, Storage] = {}
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(path, f"damaged zip checkpoint ({exc})") from None
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise CheckpointError(path, "zip file without a single <root>/data.pkl: not a torch.save checkpoint")
        root = pkl[0][: -len("data.pkl")]
        order = "little"
        if root + "byteorder" in names:
            order = zf.read(root + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError(path, f"unknown byte order '{order}'")

        def storage_for(kind: StorageType, key: str, location: str, numel: int) -> Storage:
            if key not in storages:
                member = f"{root}data/{key}"
                if member not in names:
                    raise pickle.UnpicklingError(f"storage '{key}' is missing from the archive")
                data = zf.read(member)
                need = numel * kind.raw_dtype.itemsize
                if len(data) < need:
                    raise pickle.UnpicklingError(f"storage '{key}' is truncated ({len(data)} of {need} bytes)")
                storages[key] = Storage(kind, key, numel, location, data[:need])
            return storages[key]

        with zf.open(pkl[0]) as fh:
            obj = _unpickle(path, io.BytesIO(fh.read()), storage_for)
    for st in storages.values():
        st.byteorder = order
    return obj, storages


def _read_legacy(path: Path) -> tuple[object, dict[str, Storage]]:
    storages: dict[str, Storage] = {}

    def storage_for(kind: StorageType, key: str, location: str, numel: int) -> Storage:
        if key not in storages:
            storages[key] = Storage(kind, key, numel, location)
        return storages[key]

    def no_storage(*_a):
        raise pickle.UnpicklingError("storage before the checkpoint header")

    with open(path, "rb") as fh:
        try:
            magic = _unpickle(path, fh, no_storage)
        except CheckpointError as exc:
            if "refused" in exc.reason:
                raise
            magic = None
        if magic != LEGACY_MAGIC:
            raise CheckpointError(path, "not a PyTorch checkpoint (neither a torch.save zip nor the legacy format)")
        protocol = _unpickle(path, fh, no_storage)
        if protocol != LEGACY_PROTOCOL:
            raise CheckpointError(path, f"legacy checkpoint protocol {protocol!r} is not supported")
        sys_info = _unpickle(path, fh, no_storage)
        little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
        order = "little" if little else "big"
        obj = _unpickle(path, fh, storage_for)
        keys = _unpickle(path, fh, no_storage)
        if not isinstance(keys, list):
            raise CheckpointError(path, "legacy checkpoint without its storage list")
        fmt = "<q" if little else ">q"
        for key in keys:
            st = storages.get(str(key))
            if st is None:
                raise CheckpointError(path, f"storage '{key}' listed but never used")
            head = fh.read(8)
            if len(head) != 8:
                raise CheckpointError(path, f"truncated before storage '{key}'")
            (count,) = struct.unpack(fmt, head)
            if count != st.numel:
                raise CheckpointError(path, f"storage '{key}' holds {count} elements, the pickle says {st.numel}")
            need = count * st.kind.raw_dtype.itemsize
            st.data = fh.read(need)
            if len(st.data) != need:
                raise CheckpointError(path, f"storage '{key}' is truncated")
    for st in storages.values():
        st.byteorder = order
    return obj, storages


# ---- tensors --------------------------------------------------------------------------------
def _to_array(path: Path, t: LazyTensor) -> np.ndarray:
    st = t.storage
    if not isinstance(st, Storage):
        raise CheckpointError(path, "a tensor is not backed by a storage")
    if st.data is None:
        raise CheckpointError(path, f"storage '{st.key}' has no data")
    size, stride, offset = t.size, t.stride, t.offset
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and isinstance(offset, int) and offset >= 0
            and all(isinstance(v, int) and v >= 0 for v in size + stride)):
        raise CheckpointError(path, f"tensor on storage '{st.key}' has an invalid shape or strides")
    raw = st.kind.raw_dtype.newbyteorder("<" if st.byteorder == "little" else ">")
    flat = np.frombuffer(st.data, dtype=raw, count=st.numel)
    n = int(np.prod(size, dtype=np.int64)) if size else 1
    if n:
        last = offset + sum((s - 1) * d for s, d in zip(size, stride))
        if last >= st.numel:
            raise CheckpointError(path, f"tensor reaches past the end of storage '{st.key}'")
        arr = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(d * raw.itemsize for d in stride), writeable=False
        )
    else:
        arr = np.zeros(size, dtype=raw)
    arr = np.array(arr, dtype=raw.newbyteorder("="))  # own, contiguous, native-endian copy
    if STORAGE_DTYPES[st.kind.name] == "bf16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def _materialise(path: Path, obj, depth: int = 0):
    if depth > 100:
        raise CheckpointError(path, "nesting too deep")
    if isinstance(obj, LazyTensor):
        return _to_array(path, obj)
    if isinstance(obj, dict):
        out = OrderedDict() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialise(path, v, depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        vals = [_materialise(path, v, depth + 1) for v in obj]
        return vals if isinstance(obj, list) else tuple(vals)
    return obj


@dataclass
class Checkpoint:
    """What a checkpoint holds, tensors as NumPy arrays; ``layout`` is "zip" or "legacy"."""

    path: Path
    content: object
    layout: str
    locations: set[str] = field(default_factory=set)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read any torch.save file made of tensors and plain containers; raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        if zipfile.is_zipfile(path):
            obj, storages = _read_zip(path)
            layout = "zip"
        else:
            obj, storages = _read_legacy(path)
            layout = "legacy"
    except OSError as exc:
        raise CheckpointError(path, f"cannot read ({exc.strerror or exc})") from None
    return Checkpoint(path, _materialise(path, obj), layout, {s.location for s in storages.values()})
