"""Checkpoints in a file that cannot run code when it is read: one NumPy ``.npz`` without pickles.

A chunk's checkpoint is a tree of frozen dataclasses (loop state, samples, fitted models and their
specs), tuples, lists, dicts with string keys, scalars, NumPy arrays and torch tensors. ``dumps`` writes
the tree's shape as JSON and every array as an entry of the archive; ``loads`` reads it back with
``allow_pickle=False`` and rebuilds a dataclass only when its class is a dataclass of a module that this
process has already imported (madloop's, or the user's module that registered a model), setting its
fields without calling its ``__init__``. A file from elsewhere can at worst fail to load.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from typing import Any

import numpy as np

TREE = "__tree__"


class SnapshotError(ValueError):
    """A checkpoint that cannot be written or read back safely."""


def dumps(obj: Any) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(obj, arrays)
    arrays[TREE] = np.frombuffer(json.dumps(tree).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        tree = json.loads(arrays.pop(TREE).tobytes().decode("utf-8"))
    except SnapshotError:
        raise
    except Exception as err:  # zipfile, json and numpy raise several types for a damaged file
        raise SnapshotError(f"not a madloop checkpoint ({type(err).__name__}: {err})") from None
    return _decode(tree, arrays)


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.ndarray, np.generic)):
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(obj)
        if arrays[key].dtype == object:
            raise SnapshotError("object arrays cannot be checkpointed safely")
        return {"array": key, "scalar": isinstance(obj, np.generic)}
    if type(obj).__module__ == "torch" and type(obj).__name__ in ("Tensor", "Parameter"):
        return _encode_tensor(obj, arrays)
    if type(obj).__module__ == "torch" and type(obj).__name__ == "device":
        return {"device": str(obj)}
    if isinstance(obj, (list, tuple)):
        return {"list" if isinstance(obj, list) else "tuple": [_encode(x, arrays) for x in obj]}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise SnapshotError("checkpointed dicts need string keys")
        return {"dict": {k: _encode(v, arrays) for k, v in obj.items()}}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        fields = {f.name: _encode(getattr(obj, f.name), arrays) for f in dataclasses.fields(obj)}
        return {"class": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    raise SnapshotError(f"cannot checkpoint a {type(obj).__module__}.{type(obj).__qualname__} safely")


def _encode_tensor(t, arrays: dict[str, np.ndarray]) -> Any:
    import torch

    host = t.detach().cpu()
    dtype = str(host.dtype).removeprefix("torch.")
    if host.dtype == torch.bfloat16:
        host = host.float()  # exact: every bfloat16 is a float32
    key = f"a{len(arrays)}"
    arrays[key] = host.numpy()
    return {"tensor": key, "dtype": dtype, "device": str(t.device), "grad": bool(t.requires_grad)}


def _decode(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not isinstance(node, dict):
        return node
    if "array" in node:
        value = arrays[node["array"]]
        return value[()] if node["scalar"] else value
    if "tensor" in node:
        import torch

        t = torch.from_numpy(arrays[node["tensor"]].copy()).to(getattr(torch, node["dtype"]))
        return t.to(node["device"]).requires_grad_(node["grad"])
    if "device" in node:
        import torch

        return torch.device(node["device"])
    if "list" in node:
        return [_decode(x, arrays) for x in node["list"]]
    if "tuple" in node:
        return tuple(_decode(x, arrays) for x in node["tuple"])
    if "dict" in node:
        return {k: _decode(v, arrays) for k, v in node["dict"].items()}
    cls = _known_dataclass(node["class"])
    obj = object.__new__(cls)
    for name, value in node["fields"].items():
        object.__setattr__(obj, name, _decode(value, arrays))
    return obj


def _known_dataclass(name: str) -> type:
    """A dataclass of an already imported module; nothing is imported, nothing is called."""
    module, _, qualname = name.partition(":")
    target: Any = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if not (isinstance(target, type) and dataclasses.is_dataclass(target)):
        raise SnapshotError(f"the checkpoint names {name}, which is not a dataclass of a loaded module")
    return target
