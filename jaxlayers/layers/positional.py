"""Positional encodings added to a sequence: sinusoidal (fixed) and learned."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlayers._checks import check_float, check_positive_int, check_rank, shape_of
from jaxlayers.core import Layer, Masked, layer_factory, stateless
from jaxlayers.initializers import uniform

__all__ = ["SinusoidalPositionalEncoding", "PositionEmbedding", "sinusoidal_table"]


def sinusoidal_table(max_len: int, dim: int, base: float = 10000.0) -> np.ndarray:
    """PE (max_len, dim) in float64: PE[p, 2i] = sin(p / base^(2i/dim)), PE[p, 2i+1] = cos(...)."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    freq = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    table = np.zeros((max_len, dim))
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq[: dim // 2])
    return table


def _sequence(name: str, x, max_len: int):
    values, mask = (x.values, x.mask) if isinstance(x, Masked) else (x, None)
    check_float(name, values)
    check_rank(name, values, 3, "(N, T, features)")
    if values.shape[1] > max_len:
        raise ValueError(f"{name}: the sequence has {values.shape[1]} steps, more than "
                         f"max_len={max_len}; build the layer with a larger max_len.")
    return values, mask


def _rewrap(y, mask):
    return y if mask is None else Masked(y, mask)


@layer_factory
def SinusoidalPositionalEncoding(max_len: int, *, base: float = 10000.0) -> Layer:
    """Add the fixed sinusoidal encoding (Vaswani et al. 2017; seed 004): y = x + PE[:T].

    Math: PE(pos, 2i) = sin(pos / base^(2i/d)),  PE(pos, 2i+1) = cos(pos / base^(2i/d)),
    d the feature size; PE(pos + k) is a linear function of PE(pos) for every k.

    Shapes: x (N, T, d) with T <= max_len -> y of the same shape; a `jl.Masked` input
    keeps its mask. params {}, state {} (the table is a constant, computed in float64
    and cast to x's dtype).

    Raises:
      ValueError: max_len not a positive int (construction); an input not of rank 3 or
        longer than max_len (trace time). TypeError: a non-float input.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, jaxlayers as jl
      >>> pe = jl.SinusoidalPositionalEncoding(16)
      >>> params, state = pe.init(jax.random.key(0), (1, 3, 4))
      >>> y, _ = pe.apply(params, state, jnp.zeros((1, 3, 4)))  # y = x + PE
      >>> print(np.asarray(y[0]).round(3))  # d = 4: sin(t), cos(t), sin(t/100), cos(t/100)
      [[ 0.     1.     0.     1.   ]
       [ 0.841  0.54   0.01   1.   ]
       [ 0.909 -0.416  0.02   1.   ]]
    """
    name = "SinusoidalPositionalEncoding"
    check_positive_int(name, "max_len", max_len)

    def apply(params, state, x, *, key=None, training=False):
        del params, key, training
        values, mask = _sequence(name, x, max_len)
        t, d = values.shape[1], values.shape[2]
        pe = jnp.asarray(sinusoidal_table(t, d, base), values.dtype)[None]
        return _rewrap(values + jnp.broadcast_to(pe, values.shape), mask), state

    return stateless(apply, name=name)


@layer_factory
def PositionEmbedding(max_len: int, *, embeddings_init=uniform(),
                      param_dtype=jnp.float32) -> Layer:
    """Add a learned embedding of each position (BERT, GPT-2, ViT): y = x + embeddings[:T].

    Keyword input offset=p (an int, traced or not) adds rows p..p+T-1 instead: the
    positions of a continued sequence (KV-cache decoding).

    Shapes: x (N, T, d) with T <= max_len -> y of the same shape; a `jl.Masked` input
    keeps its mask. params {"embeddings": (max_len, d)} (Keras's PositionEmbedding),
    state {}. embeddings_init: U(-0.05, 0.05) by default, as Keras's Embedding.

    Raises:
      ValueError: max_len not a positive int (construction); an input not of rank 3,
        longer than max_len, or with another feature size than the table (trace time).
      TypeError: a non-float input.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> pos = jl.PositionEmbedding(16)
      >>> params, state = pos.init(jax.random.key(0), (2, 5, 4))
      >>> jax.tree.map(jnp.shape, params)
      {'embeddings': (16, 4)}
      >>> y, _ = pos.apply(params, state, jnp.zeros((2, 5, 4)))  # y = x + embeddings[:5]
      >>> bool((y[1] == params["embeddings"][:5]).all())
      True
    """
    name = "PositionEmbedding"
    check_positive_int(name, "max_len", max_len)

    def init(key, spec):
        shape = shape_of(name, spec)
        if len(shape) != 3:
            raise ValueError(f"{name}: input must have rank 3 (N, T, features), got shape "
                             f"{shape}.")
        return {"embeddings": embeddings_init(key, (max_len, shape[-1]), param_dtype)}, {}

    def apply(params, state, x, *, key=None, training=False, offset=0):
        del key, training
        values, mask = _sequence(name, x, max_len)
        table = params["embeddings"]
        if values.shape[-1] != table.shape[-1]:
            raise ValueError(f"{name}: input must have {table.shape[-1]} features on the "
                             f"last axis (as the table), got shape {tuple(values.shape)}.")
        t = values.shape[1]
        if not isinstance(offset, jax.core.Tracer) and int(offset) + t > max_len:
            raise ValueError(f"{name}: positions {int(offset)}..{int(offset) + t - 1} do not "
                             f"fit max_len={max_len}.")
        pe = jax.lax.dynamic_slice_in_dim(table, offset, t).astype(values.dtype)[None]
        return _rewrap(values + jnp.broadcast_to(pe, values.shape), mask), state

    return Layer(init, apply, name=name)
