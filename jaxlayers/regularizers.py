"""Weight penalties on kernels: `l1(lam)`, `l2(lam)`, `l1_l2(l1=, l2=)` (seed 004, Keras).

Each returns `penalty(params) -> scalar`, to add to a loss:

    reg = jl.regularizers.l2(1e-4)
    loss = jl.losses.sparse_categorical_crossentropy(logits, y, from_logits=True) + reg(params)

Only kernels are penalised (the leaves `is_kernel` selects: Dense/Conv `kernel`,
`recurrent_kernel`, `depthwise_kernel`, `pointwise_kernel`, ...); biases, BatchNorm's
gamma/beta and embeddings are not, as Keras's `kernel_regularizer`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["l1", "l2", "l1_l2", "is_kernel"]


def _key_name(key: Any):
    """The name of one pytree path entry: a dict key, an attribute name, or a plain str."""
    if isinstance(key, str):
        return key
    if isinstance(key, jax.tree_util.DictKey):
        return key.key
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    return None  # SequenceKey / FlattenedIndexKey: a position, not a name


def is_kernel(path) -> bool:
    """True if the last entry of a pytree path is a name ending in "kernel".

    `path` is a key path as `jax.tree_util.tree_flatten_with_path` gives it (a tuple of
    DictKey / SequenceKey / GetAttrKey), a tuple of plain strings, or a "/"-joined path
    string as `jl.freeze` and `jl.summary` show it ("features/conv1/kernel"), so the
    same predicate selects for freezing and for penalties. Matches "kernel",
    "recurrent_kernel", "depthwise_kernel", "pointwise_kernel"; not "bias", "gamma",
    "beta", "embeddings", nor a positional entry.
    """
    if isinstance(path, str):
        path = tuple(path.split("/"))
    if not path:
        return False
    name = _key_name(path[-1])
    return isinstance(name, str) and name.endswith("kernel")


def _check_lam(where: str, name: str, value: Any) -> float:
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value) and value >= 0)
    if not ok:
        raise ValueError(f"{where}: {name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def _kernels(params) -> list:
    """The kernel leaves of `params`, each in at least float32."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    kernels = [jnp.asarray(w) for path, w in leaves if is_kernel(path)]
    return [w.astype(jnp.promote_types(w.dtype, jnp.float32)) for w in kernels]


def _sum(terms) -> jax.Array:
    return sum(terms, jnp.zeros((), jnp.float32))


def l1(lam: float) -> Callable:
    """L1 penalty (lasso): lam · Σ |w| over every kernel w in params.

    Shapes: params a pytree -> a scalar (0 when it holds no kernel), in at least float32.

    Args:
      lam: the strength λ >= 0 (Keras's `l1`; 0.01 is its default).

    Raises:
      ValueError: lam negative, nan or infinite (construction).
    """
    lam = _check_lam("l1", "lam", lam)

    def penalty(params):
        return lam * _sum(jnp.sum(jnp.abs(w)) for w in _kernels(params))

    return penalty


def l2(lam: float) -> Callable:
    """L2 penalty (weight decay): lam · Σ w² over every kernel w in params, with no ½.

    As seed 004 and Keras's `l2` (its gradient is 2·lam·w); optax's `l2_loss` and some
    texts use ½·lam·Σ w², whose gradient is lam·w: halve lam to match those.

    Shapes: params a pytree -> a scalar (0 when it holds no kernel), in at least float32.

    Args:
      lam: the strength λ >= 0.

    Raises:
      ValueError: lam negative, nan or infinite (construction).
    """
    lam = _check_lam("l2", "lam", lam)

    def penalty(params):
        return lam * _sum(jnp.sum(jnp.square(w)) for w in _kernels(params))

    return penalty


def l1_l2(*, l1: float, l2: float) -> Callable:
    """Elastic net: l1 · Σ |w| + l2 · Σ w² over every kernel w in params.

    Shapes: params a pytree -> a scalar, in at least float32.

    Args:
      l1: the L1 strength, >= 0 (keyword-only).
      l2: the L2 strength, >= 0 (keyword-only).

    Raises:
      ValueError: either strength negative, nan or infinite (construction).
    """
    lam1, lam2 = _check_lam("l1_l2", "l1", l1), _check_lam("l1_l2", "l2", l2)

    def penalty(params):
        ws = _kernels(params)
        return (lam1 * _sum(jnp.sum(jnp.abs(w)) for w in ws)
                + lam2 * _sum(jnp.sum(jnp.square(w)) for w in ws))

    return penalty
