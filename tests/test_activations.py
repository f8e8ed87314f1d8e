"""jaxlayers.activations and the Activation layer against torch.nn.functional and seed 003/004."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import jaxlayers as jl

A = jl.activations
X = np.concatenate([np.linspace(-6.0, 6.0, 25), [0.0, -1e-3, 1e-3]]).astype(np.float32)
X2 = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32) * 3
GRID = jnp.linspace(-4.0, 4.0, 8001)  # spacing 1e-3


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def close(got, want, atol=1e-6):
    chex.assert_trees_all_close(np.asarray(got), np.asarray(want), rtol=1e-5, atol=atol)


@pytest.mark.parametrize("name, ref", [
    ("sigmoid", torch.sigmoid),
    ("tanh", torch.tanh),
    ("relu", F.relu),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.01)),
    ("elu", F.elu),
    ("gelu", lambda x: F.gelu(x, approximate="none")),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
    ("swish", F.silu),
    ("silu", F.silu),
    ("linear", lambda x: x),
])
def test_elementwise_vs_torch(name, ref):
    close(A.get(name)(X), ref(t64(X)))
    close(getattr(A, name)(X), ref(t64(X)))


def test_options_vs_torch():
    close(A.leaky_relu(X, alpha=0.2), F.leaky_relu(t64(X), 0.2))
    close(A.get("elu", alpha=0.5)(X), F.elu(t64(X), alpha=0.5))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_softmax_vs_torch(temperature):
    close(A.softmax(X2, temperature=temperature), F.softmax(t64(X2) / temperature, dim=-1))
    close(A.get("softmax", temperature=temperature, axis=0)(X2),
          F.softmax(t64(X2) / temperature, dim=0))


def test_softmax_bfloat16_keeps_dtype():
    y = A.softmax(jnp.asarray(X2, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    close(y.astype(jnp.float32), F.softmax(t64(X2), dim=-1), atol=1e-2)


def test_step_is_heaviside_with_zero_gradient():
    close(A.step(X), np.heaviside(X, 1.0))  # 1 at x >= 0 (x = 0 included)
    assert float(A.step(jnp.float32(0.0))) == 1.0
    g = jax.vmap(jax.grad(A.step))(jnp.asarray(X))
    chex.assert_trees_all_equal(g, 0.0)


# --- seed 003 Q9 / Q10 / Q11 / Q12 and seed 004 ---------------------------------------

def test_seed_softmax_example():
    """003-Q9-e1: softmax([2.0, 1.0, 0.1]) = [0.659, 0.243, 0.098] as printed."""
    p = A.softmax(jnp.array([2.0, 1.0, 0.1]))
    # the seed rounds the exponentials to 2 dp before dividing: 1e-3 is its precision
    chex.assert_trees_all_close(p, np.asarray([0.659, 0.243, 0.098]), atol=1e-3, rtol=1e-7)
    chex.assert_trees_all_close(p, np.asarray([0.659001, 0.242433, 0.098566]), atol=1e-6, rtol=1e-7)


def test_seed_sigmoid_derivative_max_is_quarter_at_zero():
    """003-Q10-e1: σ′(0) = 0.25, the maximum."""
    d = jax.vmap(jax.grad(A.sigmoid))(GRID)
    i = int(jnp.argmax(d))
    assert float(GRID[i]) == pytest.approx(0.0, abs=1e-6)
    chex.assert_trees_all_close(d[i], 0.25, rtol=1e-6)
    chex.assert_trees_all_close(jax.grad(A.sigmoid)(0.0), 0.25, rtol=1e-7)


def test_seed_tanh_derivative_and_identity():
    """003-Q10-e1: tanh′(0) = 1 and tanh x = 2σ(2x) - 1."""
    chex.assert_trees_all_close(jax.grad(A.tanh)(0.0), 1.0, rtol=1e-7)
    close(A.tanh(X), 2 * np.asarray(A.sigmoid(2 * X)) - 1)


def test_seed_vanishing_gradient_chain():
    """003-Q11-e2 (1, 0.25, 0.0625, 0.0156, 0.0039); 003-Q11-e1 (0.25¹⁰ = 9.5×10⁻⁷)."""
    # ten sigmoid layers, each fed 0 (σ(x) − 0.5 keeps the next input at 0): σ'(0)^10
    def chain(x, k):
        for _ in range(k):
            x = A.sigmoid(x) - 0.5
        return x

    grads = [float(jax.grad(chain)(0.0, k)) for k in range(5)]
    chex.assert_trees_all_close(np.asarray(grads), np.asarray([1.0, 0.25, 0.0625, 0.0156, 0.0039]),
                                atol=5e-5, rtol=1e-7)
    g10 = float(jax.grad(chain)(0.0, 10))
    chex.assert_trees_all_close(g10, 9.5e-7, rtol=0.01)
    chex.assert_trees_all_close(g10, 0.25 ** 10, rtol=1e-6)


@pytest.mark.parametrize("name, x_min, y_min", [
    ("swish", -1.2785, -0.278465),      # 003-Q12-e1: ≈ -0.278
    ("gelu", -0.7518, -0.169971),       # exact x·Φ(x); 004-S1-e2: range ≈ (-0.17, +∞)
    ("gelu_tanh", -0.7525, -0.170041),  # tanh approximation: a different minimum
])
def test_seed_minimum(name, x_min, y_min):
    y = A.get(name)(GRID)
    i = int(jnp.argmin(y))
    chex.assert_trees_all_close(float(y[i]), y_min, atol=5e-6, rtol=1e-7)
    chex.assert_trees_all_close(float(GRID[i]), x_min, atol=3e-3, rtol=1e-7)


def test_seed_leaky_relu_default_slope():
    close(A.leaky_relu(np.array([-2.0, 3.0])), [-0.02, 3.0])


# --- get() and the Activation layer ---------------------------------------------------

def test_get_resolves_none_and_callables():
    assert A.get(None) is A.linear
    assert A.get(jnp.sin) is jnp.sin
    assert set(A.NAMES) >= {"relu", "sigmoid", "tanh", "softmax", "leaky_relu", "elu", "gelu",
                            "gelu_tanh", "swish", "silu", "step", "linear"}


@pytest.mark.parametrize("args, kwargs, match", [
    (("relu6",), {}, r"Activation: activation must be one of .*'relu6'"),
    ((3,), {}, r"Activation: activation must be one of"),
    (("relu",), {"alpha": 0.1}, r"Activation: activation 'relu' takes options none"),
    (("softmax",), {"alpha": 0.1}, r"Activation: activation 'softmax' takes options"),
    (("softmax",), {"temperature": 0.0}, r"Activation: softmax temperature must be > 0"),
])
def test_get_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        A.get(*args, **kwargs)
    with pytest.raises(ValueError, match=match):
        jl.Activation(*args, **kwargs)


def test_get_error_names_the_layer():
    with pytest.raises(ValueError, match="Dense: activation must be one of"):
        jl.Dense(3, activation="rleu")


@pytest.mark.parametrize("layer, ref", [
    (jl.Activation("relu"), F.relu),
    (jl.Activation("leaky_relu", alpha=0.2), lambda x: F.leaky_relu(x, 0.2)),
    (jl.Activation("softmax", temperature=2.0), lambda x: F.softmax(x / 2.0, dim=-1)),
    (jl.Activation("gelu"), F.gelu),
    (jl.Activation(jnp.tanh), torch.tanh),
])
def test_activation_layer_vs_torch(layer, ref):
    params, state = layer.init(jax.random.key(0), X2.shape)
    assert params == {} and state == {}
    y, new_state = layer.apply(params, state, jnp.asarray(X2))
    close(y, ref(t64(X2)))
    assert new_state == {}


def test_activation_layer_rejects_int_input():
    layer = jl.Activation("relu")
    with pytest.raises(TypeError, match="Activation: input must have a floating dtype"):
        layer.apply({}, {}, jnp.ones((2, 3), jnp.int32))
