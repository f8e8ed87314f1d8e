"""Small input checks shared by every layer; each message names the layer (STYLE.md §4)."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlayers.masked import Masked


class ShapeSpec(tuple):
    """A shape tuple that also carries a dtype: what combinators hand to a child's init.

    It indexes and compares like the plain tuple a user's own `init` expects
    (`input_shape[-1]`), and `as_struct` reads its dtype (int32 token ids stay int32).
    """

    dtype: Any

    def __new__(cls, shape, dtype):
        self = super().__new__(cls, tuple(int(d) for d in shape))
        self.dtype = jnp.dtype(dtype)
        return self

    @property
    def shape(self):
        return tuple(self)


def to_shape_spec(tree: Any) -> Any:
    """Replace every ShapeDtypeStruct in `tree` by a `ShapeSpec`."""
    return jax.tree.map(lambda s: ShapeSpec(s.shape, s.dtype), tree)


def is_shape(spec: Any) -> bool:
    """True for a plain shape: a tuple or list of non-negative Python ints."""
    return isinstance(spec, (tuple, list)) and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in spec)


def as_struct(spec: Any, dtype=jnp.float32):
    """Turn an input spec into `jax.ShapeDtypeStruct`s, keeping tuples of specs as tuples.

    A spec is a shape tuple (float32 unless `dtype` says otherwise), an array, a
    `jax.ShapeDtypeStruct`, a `Masked` of those, or a tuple of specs (multi-input layers).
    """
    if isinstance(spec, Masked):
        return Masked(as_struct(spec.values, dtype), as_struct(spec.mask, jnp.bool_))
    if isinstance(spec, jax.ShapeDtypeStruct):
        return spec
    if hasattr(spec, "shape") and hasattr(spec, "dtype"):
        return jax.ShapeDtypeStruct(tuple(spec.shape), spec.dtype)
    if is_shape(spec):
        return jax.ShapeDtypeStruct(tuple(int(d) for d in spec), dtype)
    if isinstance(spec, (tuple, list)):
        return tuple(as_struct(s, dtype) for s in spec)
    raise TypeError(f"input_shape must be a shape tuple, an array, a jax.ShapeDtypeStruct "
                    f"or a tuple of those, got {spec!r}.")


def shape_of(spec: Any) -> tuple[int, ...]:
    """The shape of a single-input spec (shape tuple, array, struct, or Masked)."""
    if isinstance(spec, Masked):
        spec = spec.values
    if is_shape(spec):
        return tuple(int(d) for d in spec)
    if hasattr(spec, "shape"):
        return tuple(spec.shape)
    raise TypeError(f"expected a shape tuple, an array or a jax.ShapeDtypeStruct, got {spec!r}.")


def describe(x: Any) -> str:
    """A short description of a value for an error message: shapes, never tracer reprs."""
    if isinstance(x, (tuple, list)):
        inner = ", ".join(describe(v) for v in x)
        return f"{type(x).__name__} of length {len(x)} ({inner})"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"an array of shape {tuple(x.shape)}"
    return type(x).__name__


def check_positive_int(layer: str, name: str, value: Any) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}.")
    return int(value)


def check_rate(layer: str, name: str, value: Any) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"{layer}: {name} must be a float in [0, 1), got {value!r}.")
    return float(value)


def check_positive_float(layer: str, name: str, value: Any) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
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
