"""Dropout, and the one dropout mask every random layer draws (RNNs, spatial, drop-path)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlayers._checks import check_float, check_rate
from jaxlayers.core import Layer, Masked, layer_factory, stateless

__all__ = ["Dropout", "dropout_mask", "drop", "require_key"]


def require_key(layer: str, key) -> None:
    """The one missing-key error of every random layer: a ValueError naming `layer`."""
    if key is None:
        raise ValueError(f"{layer}: training=True needs a PRNG key, got key=None; "
                         f"pass key=jax.random.key(seed) to apply.")


def dropout_mask(layer: str, key, rate: float, shape):
    """A bool keep-mask of `shape`: True with probability 1 - rate (`rate` drops).

    Raises the ValueError naming `layer` when `key` is None, even at rate 0, so that a
    missing key is found before it matters.
    """
    require_key(layer, key)
    return jax.random.bernoulli(key, 1.0 - rate, tuple(shape))


def drop(x, keep, rate: float):
    """Inverted dropout with a keep-mask broadcast to x: where(keep, x / (1 - rate), 0).

    `where`, not keep * x: a dropped inf must become 0, not nan.
    """
    keep = jnp.broadcast_to(keep, x.shape)
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros_like(x))


@layer_factory
def Dropout(rate: float) -> Layer:
    """Inverted dropout: while training, zero each entry with probability `rate`.

    Math (training):  y = where(m, x / (1 - rate), 0),  m ~ Bernoulli(1 - rate) per entry
    Math (inference): y = x.  E[y] = x in both modes, so nothing is rescaled at test time
    (seeds 000 and 004: x·V/(1 - p)).

    Shapes: x (N, ...) -> y (N, ...); a `jl.Masked` input keeps its mask. params {}, state {}.

    Args:
      rate: probability of dropping an entry, in [0, 1). 0 makes the layer the identity.

    Raises:
      ValueError: `rate` outside [0, 1) (construction); `training=True` with `key=None`.
      TypeError: a non-float input.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> drop = jl.Dropout(0.25)
      >>> x = jnp.ones((2, 8))
      >>> params, state = drop.init(jax.random.key(0), x.shape)
      >>> y, _ = drop.apply(params, state, x, key=jax.random.key(1), training=True)
      >>> print(jnp.unique(y * 0.75))  # the kept entries are x / (1 - rate)
      [0. 1.]
      >>> bool((drop.apply(params, state, x)[0] == x).all())  # inference: the identity
      True
    """
    rate = check_rate("Dropout", "rate", rate)

    def apply(params, state, x, *, key=None, training=False):
        if isinstance(x, Masked):
            y, state = apply(params, state, x.values, key=key, training=training)
            return Masked(y, x.mask), state
        check_float("Dropout", x)
        if not training:
            return x, state
        keep = dropout_mask("Dropout", key, rate, x.shape)
        return (x if rate == 0.0 else drop(x, keep, rate)), state

    return stateless(apply, name="Dropout")
