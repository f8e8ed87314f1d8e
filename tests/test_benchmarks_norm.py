"""benchmarks/norm.py's contenders compute BatchNorm / LayerNorm in training, every one of
them: a wrong formula or JVP rule would time a different computation."""

import importlib
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _norm_module():
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module("benchmarks.norm")
    finally:
        sys.path.remove(str(ROOT))


def _numpy_norm(kind, x, gamma, beta, eps):
    """Two-pass statistics in float64 NumPy: over (N, H, W) per channel for BN, over the
    last axis per row for LN."""
    axes = (0, 1, 2) if kind == "bn" else (-1,)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


@pytest.mark.parametrize("kind, shape", [("bn", (3, 4, 5, 6)), ("ln", (2, 5, 7))])
def test_norm_contenders_equal_numpy_and_their_gradients_equal_autodiff(kind, shape):
    norm = _norm_module()
    rng = np.random.default_rng(5)
    # an offset mean, so one-pass formulas and the shift are exercised
    x = 3.0 + 2.0 * rng.normal(size=shape)
    gamma, beta = 1 + 0.3 * rng.normal(size=shape[-1]), 0.2 * rng.normal(size=shape[-1])
    w = rng.normal(size=shape)
    want = _numpy_norm(kind, x, gamma, beta, norm.EPS)
    layer = jl.BatchNorm(epsilon=norm.EPS) if kind == "bn" else jl.LayerNorm(epsilon=norm.EPS)
    with jax.enable_x64(), jax.numpy_rank_promotion("allow"):  # hand-written broadcasting
        xs, gs, bs, ws = (jnp.asarray(a) for a in (x, gamma, beta, w))
        _, state = layer.init(jax.random.key(0), shape)

        def jaxlayers_norm(x, gamma, beta):
            return layer.apply({"gamma": gamma, "beta": beta}, state, x, training=True)[0]

        forms = {"jaxlayers": jaxlayers_norm,
                 **{f: norm._hand(kind, f) for f in ("two-pass", "one-pass", "shifted",
                                                     "custom")}}

        def loss(f):
            return lambda g, b, x: jnp.sum(jnp.tanh(f(x, g, b)) * ws)

        ref = jax.grad(loss(forms["two-pass"]), (0, 1, 2))(gs, bs, xs)
        assert float(jnp.abs(ref[2]).max()) > 1e-3
        for name, f in forms.items():
            np.testing.assert_allclose(np.asarray(f(xs, gs, bs)), want, rtol=1e-9, atol=1e-9,
                                       err_msg=name)
            got = jax.grad(loss(f), (0, 1, 2))(gs, bs, xs)
            for a, b in zip(got, ref):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-8,
                                           atol=1e-9, err_msg=name)
        # the custom rule is a JVP: forward mode agrees with reverse mode
        tangent = jnp.asarray(rng.normal(size=shape))
        _, jvp = jax.jvp(lambda x: loss(forms["custom"])(gs, bs, x), (xs,), (tangent,))
        np.testing.assert_allclose(float(jvp), float(jnp.sum(ref[2] * tangent)), rtol=1e-9)
