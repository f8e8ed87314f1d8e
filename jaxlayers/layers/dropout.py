"""Dropout: zero random entries while training, with an explicit PRNG key."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlayers._checks import check_float, check_rate
from jaxlayers.core import Layer, Masked


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
    """
    rate = check_rate("Dropout", "rate", rate)

    def init(key, input_shape):
        del key, input_shape  # nothing to learn
        return {}, {}

    def apply(params, state, x, *, key=None, training=False):
        if isinstance(x, Masked):
            y, state = apply(params, state, x.values, key=key, training=training)
            return Masked(y, x.mask), state
        check_float("Dropout", x)
        if not training:
            return x, state
        if key is None:  # checked even at rate 0, so a missing key is found before it matters
            raise ValueError("Dropout: training=True needs a PRNG key, got key=None; "
                             "pass key=jax.random.key(seed) to apply.")
        if rate == 0.0:
            return x, state
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        # where, not keep * x: a dropped inf must become 0, not nan.
        return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros_like(x)), state

    return Layer(init, apply, name="Dropout")
