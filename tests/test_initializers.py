"""jaxlayers.initializers: empirical moments and bounds against the closed-form formulas."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl

I = jl.initializers
KEY = jax.random.key(0)
# Truncated normals (jax's and Keras's convention): N(0, σ²) cut at ±2σ, with σ scaled up by
# 1 / 0.8796 (the std of a standard normal truncated to (−2, 2)) so that the variance of the
# drawn values is the formula's, e.g. Var = 2 / (fan_in + fan_out) for glorot_normal.
TRUNC_STD = 0.87962566103423978

# (initializer, variance(fan_in, fan_out), distribution)
CASES = {
    "glorot_uniform": (I.glorot_uniform(), lambda i, o: 2 / (i + o), "uniform"),
    "glorot_normal": (I.glorot_normal(), lambda i, o: 2 / (i + o), "truncated"),
    "he_uniform": (I.he_uniform(), lambda i, o: 2 / i, "uniform"),
    "he_normal": (I.he_normal(), lambda i, o: 2 / i, "truncated"),
    "lecun_uniform": (I.lecun_uniform(), lambda i, o: 1 / i, "uniform"),
    "lecun_normal": (I.lecun_normal(), lambda i, o: 1 / i, "truncated"),
}


def _check_sample(w, var, dist):
    w = np.asarray(w, np.float64)
    # 65k+ samples: the variance estimate's relative std is < 1 %, so 4 % is > 4 sigma
    chex.assert_trees_all_close(w.var(), var, rtol=0.04)
    assert abs(w.mean()) < 4 * np.sqrt(var / w.size)
    if dist == "uniform":
        limit = np.sqrt(3 * var)
        assert np.abs(w).max() <= limit * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * limit
    else:
        cut = 2 * np.sqrt(var) / TRUNC_STD
        assert np.abs(w).max() <= cut * (1 + 1e-6)
        assert np.abs(w).max() > 0.98 * cut


@pytest.mark.parametrize("name", sorted(CASES))
def test_dense_kernel_variance(name):
    init, var, dist = CASES[name]
    w = init(KEY, (256, 512), jnp.float32)
    assert w.shape == (256, 512) and w.dtype == jnp.float32
    _check_sample(w, var(256, 512), dist)


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_kernel_uses_receptive_field_fans(name):
    init, var, dist = CASES[name]
    # HWIO (3, 3, 64, 128): fan_in = 3·3·64 = 576, fan_out = 3·3·128 = 1152
    w = init(KEY, (3, 3, 64, 128), jnp.float32)
    _check_sample(w, var(576, 1152), dist)
    # the small (3, 3, 4, 8) kernel: fans 36 and 72; its bound alone tells the fans apart
    small = np.asarray(init(KEY, (3, 3, 4, 8), jnp.float32))
    bound = np.sqrt(3 * var(36, 72)) if dist == "uniform" else \
        2 * np.sqrt(var(36, 72)) / TRUNC_STD
    assert np.abs(small).max() <= bound * (1 + 1e-6)
    assert np.abs(small).max() > 0.8 * bound


@pytest.mark.parametrize("shape", [(64, 64), (96, 32), (32, 96), (3, 3, 8, 16)])
def test_orthogonal(shape):
    w = np.asarray(I.orthogonal()(KEY, shape, jnp.float32), np.float64)
    m = w.reshape(-1, shape[-1])  # rows: everything but the last (output) axis
    if m.shape[0] >= m.shape[1]:
        chex.assert_trees_all_close(m.T @ m, np.eye(m.shape[1]), atol=1e-5, rtol=1e-7)
    else:
        chex.assert_trees_all_close(m @ m.T, np.eye(m.shape[0]), atol=1e-5, rtol=1e-7)
    w2 = np.asarray(I.orthogonal(gain=2.0)(KEY, (32, 32), jnp.float32), np.float64)
    chex.assert_trees_all_close(w2.T @ w2, 4 * np.eye(32), atol=1e-4, rtol=1e-7)


def test_zeros_ones_constant():
    chex.assert_trees_all_equal(I.zeros(KEY, (2, 3)), np.zeros((2, 3)))
    chex.assert_trees_all_equal(I.ones(KEY, (4,)), np.ones(4))
    c = I.constant(0.25)(KEY, (2, 2), jnp.bfloat16)
    assert c.dtype == jnp.bfloat16
    chex.assert_trees_all_equal(np.asarray(c, np.float32), np.full((2, 2), 0.25))
    assert I.zeros(None, (3,), jnp.float16).dtype == jnp.float16


def test_uniform_and_normal():
    u = np.asarray(I.uniform()(KEY, (256, 256)), np.float64)
    assert u.min() >= -0.05 and u.max() < 0.05 and u.min() < -0.049  # Keras's U(-0.05, 0.05)
    chex.assert_trees_all_close(u.var(), 0.1 ** 2 / 12, rtol=0.04)
    u = np.asarray(I.uniform(0.0, 2.0)(KEY, (256, 256)), np.float64)
    assert u.min() >= 0.0 and u.max() < 2.0
    chex.assert_trees_all_close(u.mean(), 1.0, atol=0.01, rtol=1e-7)
    n = np.asarray(I.normal(0.1)(KEY, (256, 256)), np.float64)
    chex.assert_trees_all_close(n.var(), 0.01, rtol=0.04)
    assert np.abs(n).max() > 3 * 0.1  # not truncated


def test_param_dtype_and_keys():
    init = I.glorot_uniform()
    assert init(KEY, (8, 4), jnp.bfloat16).dtype == jnp.bfloat16
    a, b = init(KEY, (8, 4)), init(KEY, (8, 4))
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a, init(jax.random.key(1), (8, 4)))


def test_dense_defaults_keras():
    params, _ = jl.Dense(300).init(KEY, (2, 200))
    chex.assert_trees_all_equal(params["bias"], 0.0)
    limit = np.sqrt(6 / 500)
    w = np.asarray(params["kernel"])
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
