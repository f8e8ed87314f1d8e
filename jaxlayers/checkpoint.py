"""Checkpoints: any pytree of arrays to one safetensors file, written atomically; no pickle.

    jl.save("run/model.safetensors", {"params": params, "state": state}, step=10)
    tree = jl.restore("run/model.safetensors", like={"params": params, "state": state})

    manager = jl.CheckpointManager("run/checkpoints", keep=3)
    manager.save(step, tree)                 # ckpt-00000010.safetensors, oldest pruned
    tree = manager.restore(like=tree)        # the newest complete checkpoint

The file. One safetensors file: each leaf is a tensor named by its pytree key path, as
`jl.summary` and `jl.path_strings` show it ("params/0/kernel"). The small JSON that
describes it (format version, jaxlayers version, step, the user's metadata, every leaf's
path, dtype, shape and kind, and a SHA-256 checksum) lives in the safetensors header
(`__metadata__["jaxlayers"]`), so data and description are one file, replaced in one
atomic rename; `read_metadata(path)` returns it. A PRNG key (`jax.random.key`) is saved as
its key data (uint32) with its implementation's name; a dtype safetensors' NumPy API lacks
(bfloat16, float8) is saved as unsigned integers of its width, with its name. Nothing is
ever read with pickle: safetensors holds only raw little-endian buffers and JSON.

Atomicity. `save` writes a temporary file in the target folder, fsyncs it, renames it over
the target (`os.replace`, atomic on POSIX) and fsyncs the folder. A process killed at any
point leaves either the previous file or the new one, complete; never a mix, and the
previous checkpoint stays restorable (tests/test_checkpoint.py kills a writer 50 times).

Verification. `restore` recomputes the checksum (over the description and every tensor's
bytes) and fails with a ValueError naming the file on a truncated, corrupted or hand-edited
checkpoint: nothing is restored partially. With `like=`, the checkpoint must have exactly
`like`'s paths, shapes and dtypes; the first mismatch is named with both values.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlayers._paths import path_string
from jaxlayers._version import __version__

__all__ = ["save", "restore", "read_metadata", "CheckpointManager", "CorruptCheckpointError"]

FORMAT = "jaxlayers.checkpoint"
FORMAT_VERSION = 1
_HEADER_KEY = "jaxlayers"
# dtypes safetensors' NumPy API stores as themselves; others go as uint of their width
_NATIVE = {np.dtype(t) for t in (np.float64, np.float32, np.float16, np.int64, np.uint64,
                                  np.int32, np.uint32, np.int16, np.uint16, np.int8,
                                  np.uint8, np.bool_, np.complex64)}
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


class CorruptCheckpointError(ValueError):
    """A file that is no complete, intact jaxlayers checkpoint (truncated, edited, foreign)."""


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError as exc:  # a runtime dependency; this names it if it was removed
        raise ImportError("jaxlayers checkpoints need the 'safetensors' package: "
                          "pip install safetensors") from exc
    return st


def _is_key(leaf) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_stored(path: str, leaf) -> tuple[np.ndarray, dict]:
    """(the array written to the file, its description) for one leaf."""
    if _is_key(leaf):
        data = np.asarray(jax.random.key_data(leaf))
        info = {"kind": "key", "impl": str(jax.random.key_impl(leaf)),
                "shape": list(leaf.shape), "dtype": "key"}
        return np.ascontiguousarray(data), info
    if isinstance(leaf, (bool, int, float, complex)) and not hasattr(leaf, "dtype"):
        kind = type(leaf).__name__
        array = np.asarray(leaf)
    else:
        kind = "array"
        try:
            array = np.asarray(leaf)
        except Exception as exc:  # noqa: BLE001 - name the leaf whatever went wrong
            raise TypeError(f"save: the leaf at {path!r} is not an array ({type(leaf).__name__})"
                            ) from exc
        if array.dtype.kind in "OUSMm":  # objects, strings, datetimes
            raise TypeError(f"save: the leaf at {path!r} is not an array "
                            f"({type(leaf).__name__}); checkpoints hold arrays only.")
    info = {"kind": kind, "dtype": array.dtype.name if kind == "array" else kind,
            "shape": list(array.shape)}
    if array.dtype not in _NATIVE:
        array = array.view(_UINT[array.dtype.itemsize])
        info["stored"] = array.dtype.name
    return np.ascontiguousarray(array), info


def _checksum(description: dict, names: list[str], arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode())
    for name in names:
        digest.update(name.encode() + b"\0")
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def _flatten(where: str, tree) -> tuple[list[str], list[Any], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [path_string(p) or "<root>" for p, _ in leaves]
    seen = set()
    for p in paths:
        if p in seen:
            raise ValueError(f"{where}: two leaves share the path {p!r}; checkpoint tensors "
                             f"are named by path, so keys must be distinct.")
        seen.add(p)
    return paths, [leaf for _, leaf in leaves], treedef


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves the old file or the new one, whole."""
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def save(path, tree, *, step: int | None = None, metadata: dict | None = None) -> Path:
    """Write `tree` (a pytree of arrays, PRNG keys and Python scalars) to `path`, atomically.

    step: recorded in the description (default: `tree.step` when the tree has one, as a
      `jl.TrainState` will). metadata: a JSON-serialisable dict kept with the file
      (`read_metadata(path)["metadata"]`). The folder must exist. Returns the path.

    Raises:
      TypeError: a leaf that is no array, metadata that JSON cannot hold.
      ValueError: two leaves with the same path.
    """
    path = Path(path)
    if step is None and hasattr(tree, "step"):
        step = int(np.asarray(tree.step))
    if metadata is not None:
        try:
            json.dumps(metadata)
        except TypeError as exc:
            raise TypeError(f"save: metadata must be JSON-serialisable: {exc}") from None
    paths, leaves, _ = _flatten("save", tree)
    arrays, infos = {}, []
    for p, leaf in zip(paths, leaves):
        arrays[p], info = _to_stored(p, leaf)
        infos.append({"path": p, **info})
    description = {"format": FORMAT, "format_version": FORMAT_VERSION,
                   "jaxlayers_version": __version__, "step": step,
                   "metadata": metadata or {}, "leaves": infos}
    description["sha256"] = _checksum(description, paths, arrays)
    data = _safetensors().save(arrays, metadata={_HEADER_KEY: json.dumps(description)})
    _atomic_write(path, data)
    return path


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The verified (description, stored arrays) of a checkpoint file."""
    where = f"restore: {str(path)!r}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: no such checkpoint") from None
    try:
        arrays = _safetensors().load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_len])
        description = json.loads(header["__metadata__"][_HEADER_KEY])
    except Exception as exc:  # noqa: BLE001 - truncated, bad JSON, not safetensors at all
        raise CorruptCheckpointError(
            f"{where} is not a complete jaxlayers checkpoint (truncated or corrupted: "
            f"{type(exc).__name__}: {exc})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise CorruptCheckpointError(
            f"{where} is a safetensors file but not a jaxlayers checkpoint.")
    if description.get("format_version", 0) > FORMAT_VERSION:
        raise CorruptCheckpointError(
            f"{where} has format version {description['format_version']}; this jaxlayers "
            f"reads up to {FORMAT_VERSION}.")
    try:
        names = [leaf["path"] for leaf in description["leaves"]]
        want = description["sha256"]
        missing = [n for n in names if n not in arrays]
        if missing or len(arrays) != len(names):
            raise ValueError(f"tensors missing: {missing[:3]}" if missing else
                             f"{len(arrays)} tensors for {len(names)} described leaves")
        got = _checksum({k: v for k, v in description.items() if k != "sha256"}, names,
                        arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptCheckpointError(f"{where} is corrupted: {exc}") from None
    if got != want:
        raise CorruptCheckpointError(
            f"{where} is corrupted: its checksum does not match its contents (recorded "
            f"{want[:12]}..., computed {got[:12]}...); nothing was restored.")
    return description, arrays


def _decode(info: dict, stored: np.ndarray):
    if info["kind"] == "key":
        return jax.random.wrap_key_data(jnp.asarray(stored), impl=info["impl"])
    array = stored.view(jnp.dtype(info["dtype"])) if "stored" in info else stored
    array = array.reshape(info["shape"])
    if info["kind"] in ("bool", "int", "float", "complex"):
        return {"bool": bool, "int": int, "float": float, "complex": complex}[info["kind"]](
            array.item())
    return array


def _describe_like(leaf) -> tuple[str, tuple]:
    if _is_key(leaf):
        return "key", tuple(leaf.shape)
    if isinstance(leaf, (bool, int, float, complex)) and not hasattr(leaf, "dtype"):
        return type(leaf).__name__, ()
    array = leaf if hasattr(leaf, "dtype") and hasattr(leaf, "shape") else np.asarray(leaf)
    return np.dtype(array.dtype).name, tuple(array.shape)


def restore(path, like=None):
    """Read a checkpoint written by `save`, verified, into the structure of `like`.

    like: a pytree with the structure, shapes and dtypes expected (arrays, or
      `jax.ShapeDtypeStruct`s from `jax.eval_shape`); its leaves' kinds decide what comes
      back: jax arrays for jax arrays and ShapeDtypeStructs, NumPy arrays for NumPy
      arrays, Python scalars for Python scalars, PRNG keys for keys. None returns nested
      dicts keyed by the path entries ({"params": {"0": {"kernel": ...}}}) of NumPy arrays.

    Raises:
      FileNotFoundError: no file. ValueError: a truncated, corrupted or hand-edited file
      (checksum), a file that is no jaxlayers checkpoint, or a checkpoint whose paths,
      shapes or dtypes differ from `like`'s (the first mismatch is named with both).
    """
    path = Path(path)
    description, arrays = _read(path)
    infos = description["leaves"]
    values = [_decode(info, arrays[info["path"]]) for info in infos]
    if like is None:
        out: dict = {}
        for info, value in zip(infos, values):
            *parents, last = info["path"].split("/")
            node = out
            for p in parents:
                node = node.setdefault(p, {})
            node[last] = value
        return out

    where = f"restore: {str(path)!r}"
    paths, like_leaves, treedef = _flatten("restore", like)
    names = [info["path"] for info in infos]
    for i in range(max(len(paths), len(names))):
        mine = names[i] if i < len(names) else None
        theirs = paths[i] if i < len(paths) else None
        if mine != theirs:
            raise ValueError(f"{where}: the checkpoint's structure differs from the target's "
                             f"at leaf {i}: checkpoint {mine!r}, target {theirs!r} "
                             f"({len(names)} leaves in the checkpoint, {len(paths)} in the "
                             f"target).")
    out_leaves = []
    for info, value, target in zip(infos, values, like_leaves):
        dtype, shape = _describe_like(target)
        if (info["dtype"], tuple(info["shape"])) != (dtype, shape):
            raise ValueError(f"{where}: {info['path']!r} is {info['dtype']}{tuple(info['shape'])} "
                             f"in the checkpoint, {dtype}{shape} in the target.")
        if info["kind"] != "key" and isinstance(target, (jax.Array, jax.ShapeDtypeStruct)):
            # a placement over several devices (a mesh) is kept; a single-device target
            # gets an uncommitted array, as jnp.asarray makes and jit steps expect (a
            # committed copy would compile fit's step once more after a resume)
            sharding = getattr(target, "sharding", None)
            value = (jnp.asarray(value) if sharding is None
                     or isinstance(sharding, jax.sharding.SingleDeviceSharding)
                     else jax.device_put(value, sharding))
        out_leaves.append(value)
    return jax.tree_util.tree_unflatten(treedef, out_leaves)


def read_metadata(path) -> dict:
    """The verified description of a checkpoint: step, metadata, versions, leaves."""
    description, _ = _read(Path(path))
    return description


class CheckpointManager:
    """A folder of numbered checkpoints: save every so often, keep the last `keep`.

    Files are `{prefix}-{step:08d}.safetensors`, each written atomically by `save`; the
    oldest beyond `keep` are deleted after a new one is in place, so a crash at any point
    leaves at least the previous checkpoint. Temporary files of a killed save are ignored
    and removed by the next save.

    `restore()` reads the newest checkpoint; if that one fails verification (a disk error,
    a hand edit) it warns and falls back to the next newest, and raises only when none is
    readable.
    """

    def __init__(self, directory, keep: int | None = 3, *, prefix: str = "ckpt"):
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int)
                                 or keep < 1):
            raise ValueError(f"CheckpointManager: keep must be an int >= 1 or None (keep "
                             f"all), got {keep!r}.")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise ValueError(f"CheckpointManager: prefix must be letters, digits, '_', '.' "
                             f"or '-', got {prefix!r}.")
        self.directory = Path(directory)
        self.keep = keep
        self.prefix = prefix
        self._pattern = re.compile(rf"{re.escape(prefix)}-(\d+)\.safetensors")

    def __repr__(self):
        return f"CheckpointManager({str(self.directory)!r}, keep={self.keep})"

    def path(self, step: int) -> Path:
        return self.directory / f"{self.prefix}-{step:08d}.safetensors"

    def steps(self) -> list[int]:
        """The steps with a checkpoint file, oldest first."""
        if not self.directory.is_dir():
            return []
        found = (self._pattern.fullmatch(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, tree, *, metadata: dict | None = None) -> Path:
        """Write `tree` as checkpoint `step`, then delete the oldest beyond `keep`."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"CheckpointManager.save: step must be an int >= 0, got {step!r}.")
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f".{self.prefix}-*.safetensors.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        path = save(self.path(int(step)), tree, step=int(step), metadata=metadata)
        if self.keep is not None:
            for old in self.steps()[:-self.keep]:
                with contextlib.suppress(FileNotFoundError):
                    self.path(old).unlink()
        return path

    def restore(self, like=None, *, step: int | None = None):
        """The tree of checkpoint `step` (default: the newest readable one)."""
        if step is not None:
            return restore(self.path(step), like)
        steps = self.steps()
        if not steps:
            raise FileNotFoundError(f"CheckpointManager: no checkpoint in "
                                    f"{str(self.directory)!r}.")
        errors = []
        for s in reversed(steps):
            try:
                return restore(self.path(s), like)
            except FileNotFoundError:  # pruned by a concurrent save
                continue
            except CorruptCheckpointError as err:  # a mismatch with `like` is not skipped
                errors.append(str(err))
                warnings.warn(f"CheckpointManager: skipping step {s}: {err}", stacklevel=2)
        raise CorruptCheckpointError(f"CheckpointManager: no readable checkpoint in "
                         f"{str(self.directory)!r}: " + "; ".join(errors))
