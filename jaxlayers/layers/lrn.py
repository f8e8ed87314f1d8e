"""Local response normalization across channels (AlexNet's LRN, seed 002)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxlayers._checks import (check_float, check_min_rank, check_non_negative_float,
                               check_positive_float, check_positive_int)
from jaxlayers.core import Layer, layer_factory, stateless


@layer_factory
def CrossChannelNormalization(size: int = 5, *, alpha: float = 1e-4, beta: float = 0.75,
                              k: float = 2.0) -> Layer:
    """Local response normalization: divide each channel by the energy of its neighbours.

    Math (seed 002, PyTorch's LocalResponseNorm and Caffe):
      y[..., c] = x[..., c] / (k + alpha / size · Σ_j x[..., j]²)^beta,
      j from c - size//2 to c + (size-1)//2, zeros beyond the first and last channel. Computed in at least float32.

    Shapes: x (N, ..., C) -> y of the same shape (channels last). params {}, state {}.

    Args:
      size: channels in the window (default 5, AlexNet's; an even size reaches one
        further below than above, as PyTorch).
      alpha: scale (>= 0, default 1e-4), divided by `size`.  beta: exponent (>= 0,
        default 0.75).  k: additive constant (> 0, default 2.0).

    Raises:
      ValueError: a bad size/alpha/beta/k (construction); input of rank < 2 (trace time).
      TypeError: a non-float input.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, jaxlayers as jl
      >>> lrn = jl.CrossChannelNormalization(3, alpha=1.0, beta=0.5, k=1.0)
      >>> x = jnp.array([[1.0, 2.0, 3.0]])
      >>> params, state = lrn.init(jax.random.key(0), x.shape)
      >>> y, _ = lrn.apply(params, state, x)  # x / sqrt(1 + window's sum of squares / 3)
      >>> print(np.asarray(y).round(3))  # 1/sqrt(1 + 5/3), 2/sqrt(1 + 14/3), 3/sqrt(1 + 13/3)
      [[0.612 0.84  1.299]]

    TensorFlow's `tf.nn.local_response_normalization` takes a depth radius (size =
    2·radius + 1) and does not divide alpha by the window size: its alpha is ours / size.
    """
    name = "CrossChannelNormalization"
    size = check_positive_int(name, "size", size)
    alpha = check_non_negative_float(name, "alpha", alpha)
    beta = check_non_negative_float(name, "beta", beta)
    k = check_positive_float(name, "k", k)

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        check_float(name, x)
        check_min_rank(name, x, 2, "(N, ..., C)")
        compute = jnp.promote_types(x.dtype, jnp.float32)
        xc = x.astype(compute)
        lead = (1,) * (x.ndim - 1)
        # Σ x² over the channel window: a windowed sum on the last axis, zero-padded
        energy = lax.reduce_window(xc * xc, np.array(0, compute), lax.add, lead + (size,),
                                   lead + (1,),
                                   ((0, 0),) * (x.ndim - 1) + ((size // 2, (size - 1) // 2),))
        return (xc / (k + (alpha / size) * energy) ** beta).astype(x.dtype), state

    return stateless(apply, name=name)
