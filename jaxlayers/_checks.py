"""Small input checks shared by every layer; each message names the layer (STYLE.md §4)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlayers.masked import Masked


def is_shape(spec: Any) -> bool:
    """True for a plain shape: a tuple or list of non-negative Python ints."""
    return isinstance(spec, (tuple, list)) and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in spec)


def as_spec(spec: Any, dtype=jnp.float32):
    """The one conversion of an input spec: `jax.ShapeDtypeStruct`s, in the same structure.

    A spec is a `jax.ShapeDtypeStruct` (kept as it is), an array (its shape and dtype), a
    plain shape tuple (`dtype`, float32 unless the layer says otherwise: Embedding reads
    (N, T) as int32 ids), a `jl.Masked` of those (its mask is bool), or a tuple or dict of
    specs (several inputs). `jl.Layer` calls this on whatever is given to `layer.init`, so
    every layer's own init receives structs; on structs it changes nothing.
    """
    if isinstance(spec, jax.ShapeDtypeStruct):
        return spec
    if isinstance(spec, Masked):
        return Masked(as_spec(spec.values, dtype), as_spec(spec.mask, jnp.bool_))
    if hasattr(spec, "shape") and hasattr(spec, "dtype"):
        return jax.ShapeDtypeStruct(tuple(spec.shape), spec.dtype)
    if is_shape(spec):
        return jax.ShapeDtypeStruct(tuple(int(d) for d in spec), dtype)
    if isinstance(spec, (tuple, list)):
        return tuple(as_spec(s, dtype) for s in spec)
    if isinstance(spec, dict):
        return {k: as_spec(v, dtype) for k, v in spec.items()}
    raise TypeError(f"input spec must be a shape tuple, an array, a jax.ShapeDtypeStruct, "
                    f"a jl.Masked, or a tuple or dict of those, got {spec!r}.")


def spec_of(tree: Any) -> Any:
    """The spec of a value: every array (or tracer) in `tree` as a `jax.ShapeDtypeStruct`."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(tuple(a.shape), a.dtype), tree)


def shape_of(layer: str, spec: Any) -> tuple[int, ...]:
    """The shape of a single-input spec (a struct, or the values of a `jl.Masked` one)."""
    if isinstance(spec, Masked):
        spec = spec.values
    if not isinstance(spec, jax.ShapeDtypeStruct):
        raise ValueError(f"{layer}: takes one input, got the spec {spec!r}.")
    return tuple(spec.shape)


def describe(x: Any) -> str:
    """A short description of a value for an error message: shapes, never tracer reprs."""
    if isinstance(x, (tuple, list)):
        inner = ", ".join(describe(v) for v in x)
        return f"{type(x).__name__} of length {len(x)} ({inner})"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"an array of shape {tuple(x.shape)}"
    return type(x).__name__


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_positive_int(layer: str, name: str, value: Any) -> int:
    if not is_int(value) or value <= 0:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}.")
    return int(value)


def check_int_at_least(layer: str, name: str, value: Any, minimum: int) -> int:
    if not is_int(value) or value < minimum:
        raise ValueError(f"{layer}: {name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def check_non_negative_float(layer: str, name: str, value: Any, *, finite: bool = False) -> float:
    ok = _is_real(value) and value >= 0 and (not finite or math.isfinite(value))
    if not ok:
        what = "a finite number >= 0" if finite else "a number >= 0"
        raise ValueError(f"{layer}: {name} must be {what}, got {value!r}.")
    return float(value)


def check_rate(layer: str, name: str, value: Any) -> float:
    if not _is_real(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{layer}: {name} must be a float in [0, 1), got {value!r}.")
    return float(value)


def check_positive_float(layer: str, name: str, value: Any) -> float:
    if not _is_real(value) or not value > 0:
        raise ValueError(f"{layer}: {name} must be a positive number, got {value!r}.")
    return float(value)


def check_array(layer: str, x: Any) -> None:
    """Refuse a `jl.Masked` (or any non-array) in a layer that is not mask-aware."""
    if isinstance(x, Masked):
        raise TypeError(f"{layer}: does not accept a jl.Masked input (it cannot honour the "
                        f"mask); got Masked(values{tuple(x.values.shape)}, "
                        f"mask{tuple(x.mask.shape)}).")
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{layer}: input must be an array, got {type(x).__name__}.")


def check_float(layer: str, x: Any) -> None:
    """TypeError unless x has a floating dtype."""
    check_array(layer, x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{layer}: input must have a floating dtype, got {x.dtype}; "
                        f"cast it, e.g. x.astype(jnp.float32).")


def check_rank(layer: str, x: Any, ranks, layout: str = "") -> None:
    """ValueError unless x.ndim is one of `ranks` (an int or a collection of ints)."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if x.ndim not in ranks:
        want = " or ".join(str(r) for r in ranks)
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{layer}: input must have rank {want}{hint}, "
                         f"got shape {tuple(x.shape)}.")


def check_min_rank(layer: str, x: Any, rank: int, layout: str = "") -> None:
    if x.ndim < rank:
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{layer}: input must have rank >= {rank}{hint}, "
                         f"got shape {tuple(x.shape)}.")


def check_last_axis(layer: str, x: Any, expected: int) -> None:
    """ValueError naming `layer` unless x.shape[-1] == expected."""
    if x.ndim == 0 or x.shape[-1] != expected:
        raise ValueError(f"{layer}: input must have {expected} features on the last axis, "
                         f"got shape {tuple(x.shape)}.")


def check_one_of(layer: str, name: str, value: Any, allowed) -> Any:
    if value not in allowed:
        raise ValueError(f"{layer}: {name} must be one of {sorted(allowed)}, got {value!r}.")
    return value


def compute_dtype(x: Any, dtype) -> Any:
    """The dtype a layer computes in: its own `dtype`, else the input's."""
    return x.dtype if dtype is None else jnp.dtype(dtype)


def static_int(value: Any) -> int:
    return int(np.asarray(value))
