"""Weight penalties on kernels: `l1(lam)`, `l2(lam)`, `l1_l2(l1=, l2=)` (seed 004, Keras).

Each returns `penalty(params) -> scalar`, to add to a loss:

    reg = jl.regularizers.l2(1e-4)
    loss = jl.losses.sparse_categorical_crossentropy(logits, y, from_logits=True) + reg(params)

Only kernels are penalised (the leaves `is_kernel` selects: Dense/Conv `kernel`,
`recurrent_kernel`, `depthwise_kernel`, `pointwise_kernel`, ...); biases, BatchNorm's
gamma/beta and embeddings are not, as Keras's `kernel_regularizer`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxlayers._checks import check_non_negative_float
from jaxlayers._paths import path_string

__all__ = ["l1", "l2", "l1_l2", "is_kernel"]


def is_kernel(path) -> bool:
    """True if the last entry of a pytree path is a name ending in "kernel".

    `path` is a "/"-joined path string as `jl.path_strings`, `jl.path_mask` and
    `jl.summary` show it ("features/conv1/kernel"), a key path as
    `jax.tree_util.tree_flatten_with_path` gives it, or a tuple of plain strings: the same
    predicate selects for freezing and for penalties. Matches "kernel",
    "recurrent_kernel", "depthwise_kernel", "pointwise_kernel"; not "bias", "gamma",
    "beta", "embeddings", nor a positional entry ("0").
    """
    if not isinstance(path, str):
        path = path_string(path)
    return path.split("/")[-1].endswith("kernel")


def _check_lam(where: str, name: str, value: Any) -> float:
    return check_non_negative_float(where, name, value, finite=True)


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
