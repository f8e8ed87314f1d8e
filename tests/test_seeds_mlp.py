"""Seed 003/004 worked examples for gradients, MLPs and normalization (SEED_EXAMPLES.md)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl

KEY = jax.random.key(0)
rng = np.random.default_rng(0)


# --- 003 Q2 / Q3: gradients -----------------------------------------------------------

def test_gradient_of_x2_plus_y2_at_3_4():
    """003-Q2-e1: ∇(x² + y²) at (3, 4) is (6, 8)."""
    g = jax.grad(lambda v: v[0] ** 2 + v[1] ** 2)(jnp.array([3.0, 4.0]))
    chex.assert_trees_all_equal(g, np.asarray([6.0, 8.0]))


def test_chain_rule_3x_plus_2_squared():
    """003-Q3-e1: d/dx (3x + 2)² = 6(3x + 2)."""
    f = lambda x: (3 * x + 2) ** 2  # noqa: E731
    assert float(jax.grad(f)(1.0)) == 30.0
    for x in (-2.0, 0.0, 0.5, 3.0):
        chex.assert_trees_all_close(jax.grad(f)(x), 6 * (3 * x + 2), rtol=1e-6)


# --- 003 Q6: the MNIST MLP 784 -> 256 -> 128 -> 10 ------------------------------------

def test_mnist_mlp_parameter_count():
    """003-Q6-e2: 200,960 + 32,896 + 1,290 = 235,146."""
    model = jl.serial(jl.Dense(256, activation="relu"), jl.Dense(128, activation="relu"),
                      jl.Dense(10))
    params, _ = jax.eval_shape(lambda k: model.init(k, (32, 784)), KEY)
    assert [jl.count_params(p) for p in params] == [200_960, 32_896, 1_290]
    assert [n_out * (n_in + 1) for n_in, n_out in [(784, 256), (256, 128), (128, 10)]] == \
        [200_960, 32_896, 1_290]
    assert jl.count_params(params) == 235_146
    summary = jl.summary(model, (32, 784), print_fn=None)
    assert [r.params for r in summary.rows] == [200_960, 32_896, 1_290]
    assert summary.total_params == 235_146
    assert summary.rows[-1].output_shape == (32, 10)


# --- 003 Q8: two linear layers collapse to one ----------------------------------------

def test_two_linear_layers_collapse_to_one():
    """003-Q8-e2: W′ = W₂W₁, b′ = W₂b₁ + b₂."""
    x = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    two = jl.serial(jl.Dense(6), jl.Dense(3))
    params, state = two.init(KEY, x.shape)
    # random biases too (they start at zero), so b' = W2 b1 + b2 is really tested
    params = tuple({"kernel": p["kernel"],
                    "bias": jnp.asarray(rng.normal(size=p["bias"].shape), jnp.float32)}
                   for p in params)
    y_two, _ = two.apply(params, state, x)
    # seed: W' = W2 W1, b' = W2 b1 + b2 (column vectors); kernels here act on rows: x @ W1
    w1, b1 = (np.asarray(params[0][k], np.float64) for k in ("kernel", "bias"))
    w2, b2 = (np.asarray(params[1][k], np.float64) for k in ("kernel", "bias"))
    chex.assert_trees_all_close((w2.T @ w1.T).T, w1 @ w2, rtol=1e-7)  # the two orientations agree
    one = jl.Dense(3)
    merged = {"kernel": jnp.asarray(w1 @ w2, jnp.float32),
              "bias": jnp.asarray(b1 @ w2 + b2, jnp.float32)}
    y_one, _ = one.apply(merged, {}, x)
    chex.assert_trees_all_close(y_one, y_two, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(y_two, np.asarray(x, np.float64) @ (w1 @ w2) + (b1 @ w2 + b2),
                                rtol=1e-5, atol=1e-5)


# --- 000 / 003 Q5 / 004: BatchNorm and LayerNorm --------------------------------------

def _bn_reference(x, gamma, beta, eps, axes):
    mu = x.mean(axis=axes)
    var = ((x - mu) ** 2).mean(axis=axes)  # biased (1/N), as the seeds
    return gamma * (x - mu) / np.sqrt(var + eps) + beta, mu, var


def _random_affine(c):
    return (jnp.asarray(rng.uniform(0.5, 2.0, size=c), jnp.float32),
            jnp.asarray(rng.normal(size=c), jnp.float32))


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 2, 5)])
def test_batchnorm_training_and_running_state(shape):
    """000-e4 (BatchNorm): μ, biased σ², x̂ = (x - μ)/√(σ² + ε), y = γx̂ + β."""
    x = (3 + 2 * rng.normal(size=shape)).astype(np.float32)
    axes = tuple(range(len(shape) - 1))
    layer = jl.BatchNorm()  # momentum 0.99, epsilon 1e-3 (Keras)
    params, state = layer.init(KEY, shape)
    chex.assert_trees_all_equal(state["mean"], 0.0)
    chex.assert_trees_all_equal(state["var"], 1.0)
    gamma, beta = _random_affine(shape[-1])
    params = {"gamma": gamma, "beta": beta}
    y, new_state = layer.apply(params, state, jnp.asarray(x), training=True)
    x64 = x.astype(np.float64)
    want, mu, var = _bn_reference(x64, np.asarray(gamma, np.float64),
                                  np.asarray(beta, np.float64), 1e-3, axes)
    chex.assert_trees_all_close(y, want, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(new_state["mean"], 0.99 * 0.0 + 0.01 * mu, rtol=1e-5)
    chex.assert_trees_all_close(new_state["var"], 0.99 * 1.0 + 0.01 * var, rtol=1e-5)
    # inference reads the running statistics and leaves them unchanged
    y_inf, s_inf = layer.apply(params, new_state, jnp.asarray(x), training=False)
    m_run, v_run = np.asarray(new_state["mean"], np.float64), np.asarray(new_state["var"],
                                                                          np.float64)
    want_inf = np.asarray(gamma, np.float64) * (x64 - m_run) / np.sqrt(v_run + 1e-3) + \
        np.asarray(beta, np.float64)
    chex.assert_trees_all_close(y_inf, want_inf, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_equal(s_inf["mean"], new_state["mean"])


def test_batchnorm_options_are_honoured():
    shape = (6, 4)
    x = rng.normal(size=shape).astype(np.float32) * 0.01  # small var: epsilon matters
    layer = jl.BatchNorm(momentum=0.9, epsilon=1e-5)
    params, state = layer.init(KEY, shape)
    y, s = layer.apply(params, state, jnp.asarray(x), training=True)
    want, mu, var = _bn_reference(x.astype(np.float64), 1.0, 0.0, 1e-5, (0,))
    chex.assert_trees_all_close(y, want, rtol=1e-4, atol=1e-4)
    chex.assert_trees_all_close(s["mean"], 0.1 * mu, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(s["var"], 0.9 + 0.1 * var, rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 6)])
def test_layernorm_vs_numpy(shape):
    x = (1 + 3 * rng.normal(size=shape)).astype(np.float32)
    layer = jl.LayerNorm()
    params, state = layer.init(KEY, shape)
    gamma, beta = _random_affine(shape[-1])
    params = {"gamma": gamma, "beta": beta}
    x64 = x.astype(np.float64)
    mu = x64.mean(-1, keepdims=True)
    var = ((x64 - mu) ** 2).mean(-1, keepdims=True)
    want = np.asarray(gamma, np.float64) * (x64 - mu) / np.sqrt(var + 1e-3) + \
        np.asarray(beta, np.float64)
    for training in (False, True):  # no batch statistics: the same in both modes
        y, s = layer.apply(params, state, jnp.asarray(x), training=training)
        chex.assert_trees_all_close(y, want, rtol=1e-5, atol=1e-5)
        assert s == {}
