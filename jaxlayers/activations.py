"""Activation functions by name (seeds 003 Q10/Q12, 004 part 01), built on `jax.nn`."""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "swish",
           "silu", "softmax", "step", "linear", "get", "NAMES"]


def sigmoid(x):
    """σ(x) = 1 / (1 + exp(-x)), range (0, 1); σ'(x) = σ(x)(1 - σ(x)) ≤ 0.25."""
    return jax.nn.sigmoid(x)


def tanh(x):
    """tanh(x) = (e^x - e^-x) / (e^x + e^-x) = 2σ(2x) - 1, range (-1, 1)."""
    return jnp.tanh(x)


def relu(x):
    """ReLU(x) = max(0, x); gradient 0 at x = 0 (as jax.nn, PyTorch and Keras)."""
    return jax.nn.relu(x)


def leaky_relu(x, alpha: float = 0.01):
    """max(αx, x) for 0 < α < 1; α = 0.01 as the seeds (Keras's layer defaults to 0.3)."""
    return jax.nn.leaky_relu(x, negative_slope=alpha)


def elu(x, alpha: float = 1.0):
    """x for x > 0, α(exp(x) - 1) otherwise."""
    return jax.nn.elu(x, alpha=alpha)


def gelu(x):
    """Exact GELU: x·Φ(x), Φ the standard normal CDF (seed 004). Min ≈ -0.170 at x ≈ -0.752.

    Note: `jax.nn.gelu` defaults to the tanh approximation; this is the exact form, as
    PyTorch's default and Keras's `approximate=False`. See `gelu_tanh` for the other.
    """
    return jax.nn.gelu(x, approximate=False)


def gelu_tanh(x):
    """Approximate GELU (seed 003 Q12): 0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))."""
    return jax.nn.gelu(x, approximate=True)


def swish(x):
    """Swish / SiLU: x·σ(x) (seed 003 Q12); min ≈ -0.278 at x ≈ -1.278."""
    return jax.nn.silu(x)


silu = swish


def softmax(x, temperature: float = 1.0, axis: int = -1):
    """softmax(x / T)_i = exp(x_i / T) / Σ_j exp(x_j / T) over `axis`.

    T > 1 flattens the distribution, T < 1 sharpens it. Computed in at least float32.
    """
    dtype = x.dtype
    z = x.astype(jnp.promote_types(dtype, jnp.float32))
    if temperature != 1.0:
        z = z / temperature
    return jax.nn.softmax(z, axis=axis).astype(dtype)


def step(x):
    """Heaviside step of seed 004's perceptron: 1 where x ≥ 0, else 0. Its gradient is 0."""
    return jnp.where(x >= 0, jnp.ones_like(x), jnp.zeros_like(x))


def linear(x):
    """Identity: f(x) = x."""
    return x


_BY_NAME: dict[str, Callable] = {
    "sigmoid": sigmoid, "tanh": tanh, "relu": relu, "leaky_relu": leaky_relu, "elu": elu,
    "gelu": gelu, "gelu_tanh": gelu_tanh, "swish": swish, "silu": silu, "softmax": softmax,
    "step": step, "linear": linear,
}
NAMES = tuple(sorted(_BY_NAME))
# Each name's keyword hyperparameters, so that a typo fails at construction.
_OPTIONS = {"leaky_relu": {"alpha"}, "elu": {"alpha"}, "softmax": {"temperature", "axis"}}


def get(activation, layer: str = "Activation", **options) -> Callable:
    """Resolve an activation: a name from `NAMES`, a callable, or None (linear).

    `options` are its hyperparameters (`alpha` for leaky_relu/elu, `temperature` and
    `axis` for softmax). Unknown names and options raise a ValueError naming `layer`.
    """
    if activation is None:
        activation = "linear"
    if callable(activation):
        return functools.partial(activation, **options) if options else activation
    if not isinstance(activation, str) or activation not in _BY_NAME:
        raise ValueError(f"{layer}: activation must be one of {list(NAMES)} or a callable, "
                         f"got {activation!r}.")
    bad = set(options) - _OPTIONS.get(activation, set())
    if bad:
        allowed = sorted(_OPTIONS.get(activation, set())) or "none"
        raise ValueError(f"{layer}: activation {activation!r} takes options {allowed}, "
                         f"got {sorted(bad)}.")
    if activation == "softmax" and options.get("temperature", 1.0) <= 0:
        raise ValueError(f"{layer}: softmax temperature must be > 0, "
                         f"got {options['temperature']!r}.")
    fn = _BY_NAME[activation]
    return functools.partial(fn, **options) if options else fn
