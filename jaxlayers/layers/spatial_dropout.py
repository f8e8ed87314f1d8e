"""Spatial dropout: drop whole channels (feature maps) while training."""

from __future__ import annotations

from jaxlayers._checks import check_rate
from jaxlayers.core import Layer, Masked, stateless
from jaxlayers.layers.dropout import dropout_mask, drop
from jaxlayers.layers._spatial import LAYOUTS, check_input, specialise


def _spatial_dropout_nd(n: int, name: str, rate: float) -> Layer:
    rate = check_rate(name, "rate", rate)

    def apply(params, state, x, *, key=None, training=False):
        if n == 1 and isinstance(x, Masked):
            y, state = apply(params, state, x.values, key=key, training=training)
            return Masked(y, x.mask), state
        check_input(name, x, n)
        if not training:
            return x, state
        # one draw per (example, channel), shared by every position of that feature map
        keep = dropout_mask(name, key, rate, (x.shape[0],) + (1,) * n + (x.shape[-1],))
        return (x if rate == 0.0 else drop(x, keep, rate)), state

    return stateless(apply, name=name)


_DOC = """Spatial dropout: while training, zero whole channels with probability `rate`.

    Math (training): y[b, ..., c] = where(m[b, c], x[b, ..., c] / (1 - rate), 0),
      m[b, c] ~ Bernoulli(1 - rate), one draw per example and channel (mask shape
      {mask}), so neighbouring, correlated positions of a feature map drop together.
    Math (inference): y = x.

    Shapes: x {layout} -> y of the same shape{masked}. params {{}}, state {{}}.

    Args:
      rate: probability of dropping a channel, in [0, 1).

    Raises:
      ValueError: `rate` outside [0, 1) (construction); input of the wrong rank,
        `training=True` with `key=None`. TypeError: a non-float input.
{example}    """

_EXAMPLES = {
    1: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> drop = jl.SpatialDropout1D(0.25)
      >>> x = jnp.ones((2, 5, 4))
      >>> params, state = drop.init(jax.random.key(0), x.shape)
      >>> y, _ = drop.apply(params, state, x, key=jax.random.key(1), training=True)
      >>> print(y[:, 0] * 0.75)  # y * (1 - rate): 0 or 1 per (example, channel)
      [[1. 1. 1. 1.]
       [0. 1. 0. 0.]]
      >>> bool((y == y[:, :1]).all())  # one draw for every position of a channel
      True
""",
    2: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> drop = jl.SpatialDropout2D(0.25)
      >>> x = jnp.ones((2, 3, 4, 4))
      >>> params, state = drop.init(jax.random.key(0), x.shape)
      >>> y, _ = drop.apply(params, state, x, key=jax.random.key(1), training=True)
      >>> print(y[:, 0, 0] * 0.75)  # y * (1 - rate): 0 or 1 per (example, channel)
      [[1. 1. 1. 1.]
       [0. 1. 0. 0.]]
      >>> bool((y == y[:, :1, :1]).all())  # one draw for every position of a channel
      True
""",
    3: """
    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> drop = jl.SpatialDropout3D(0.25)
      >>> x = jnp.ones((2, 2, 3, 2, 4))
      >>> params, state = drop.init(jax.random.key(0), x.shape)
      >>> y, _ = drop.apply(params, state, x, key=jax.random.key(1), training=True)
      >>> print(y[:, 0, 0, 0] * 0.75)  # y * (1 - rate): 0 or 1 per (example, channel)
      [[1. 1. 1. 1.]
       [0. 1. 0. 0.]]
      >>> bool((y == y[:, :1, :1, :1]).all())  # one draw for every position of a channel
      True
""",
}

SpatialDropout1D = specialise(_spatial_dropout_nd, 1, "SpatialDropout1D", _DOC.format(
    mask="(N, 1, C)", layout=LAYOUTS[1],
    masked="; a `jl.Masked` input keeps its mask (the (N, T) mask is not the dropout mask)",
    example=_EXAMPLES[1]))
SpatialDropout2D = specialise(_spatial_dropout_nd, 2, "SpatialDropout2D", _DOC.format(
    mask="(N, 1, 1, C)", layout=LAYOUTS[2], masked="", example=_EXAMPLES[2]))
SpatialDropout3D = specialise(_spatial_dropout_nd, 3, "SpatialDropout3D", _DOC.format(
    mask="(N, 1, 1, 1, C)", layout=LAYOUTS[3], masked="", example=_EXAMPLES[3]))
