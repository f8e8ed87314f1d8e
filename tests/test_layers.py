"""Core layers against PyTorch on the CPU (layouts converted explicitly), and their errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxlayers as jl

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)


def _t(a):
    return torch.from_numpy(np.asarray(a, np.float32))


def test_dense_matches_torch_linear_on_2d_and_3d():
    for shape in [(4, 6), (2, 5, 6)]:
        layer = jl.Dense(3)
        params, state = layer.init(KEY, shape)
        lin = torch.nn.Linear(6, 3)
        with torch.no_grad():
            lin.weight.copy_(_t(params["kernel"]).T)  # torch stores (out, in)
            lin.bias.copy_(_t(params["bias"]))
        x = RNG.normal(size=shape).astype(np.float32)
        chex.assert_trees_all_close(layer.apply(params, state, x)[0],
                                    lin(_t(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_dense_without_bias_has_no_bias_key_and_applies_activation():
    layer = jl.Dense(3, use_bias=False, activation="relu")
    params, _ = layer.init(KEY, (2, 4))
    assert set(params) == {"kernel"}
    x = RNG.normal(size=(2, 4)).astype(np.float32)
    chex.assert_trees_all_close(layer.apply(params, {}, x)[0],
                                np.maximum(x @ np.asarray(params["kernel"]), 0), rtol=1e-5,
                                atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 3, 5)])
def test_batchnorm_matches_torch_in_training_and_inference(shape):
    layer = jl.BatchNorm(momentum=0.9, epsilon=1e-5)
    params, state = layer.init(KEY, shape)
    params = {"gamma": jnp.asarray(RNG.uniform(0.5, 1.5, 5), jnp.float32),
              "beta": jnp.asarray(RNG.normal(size=5), jnp.float32)}
    x = RNG.normal(2.0, 3.0, size=shape).astype(np.float32)
    bn = torch.nn.BatchNorm1d(5, eps=1e-5, momentum=0.1) if len(shape) == 2 else \
        torch.nn.BatchNorm2d(5, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(_t(params["gamma"]))
        bn.bias.copy_(_t(params["beta"]))
    xt = _t(x) if len(shape) == 2 else _t(x).permute(0, 3, 1, 2)  # NHWC -> NCHW
    bn.train()
    yt = bn(xt)
    yt = yt if len(shape) == 2 else yt.permute(0, 2, 3, 1)
    y, new_state = layer.apply(params, state, x, training=True)
    chex.assert_trees_all_close(y, yt.detach().numpy(), rtol=1e-4, atol=1e-4)
    chex.assert_trees_all_close(new_state["mean"], bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    # PyTorch's running variance is unbiased; ours is the biased one (Keras): convert
    m = x.size // 5
    biased = (bn.running_var.numpy() - 0.9) * (m - 1) / m + 0.9
    chex.assert_trees_all_close(new_state["var"], biased, rtol=1e-4)
    # inference uses the running statistics and leaves them alone
    y_inf, same_state = layer.apply(params, new_state, x, training=False)
    ref = (x - np.asarray(new_state["mean"])) / np.sqrt(np.asarray(new_state["var"]) + 1e-5)
    ref = ref * np.asarray(params["gamma"]) + np.asarray(params["beta"])
    chex.assert_trees_all_close(y_inf, ref, rtol=1e-4, atol=1e-4)
    assert same_state is new_state


def test_layernorm_matches_torch():
    x = RNG.normal(1.0, 2.0, size=(3, 4, 6)).astype(np.float32)
    layer = jl.LayerNorm()
    params, state = layer.init(KEY, x.shape)
    params = {"gamma": jnp.asarray(RNG.uniform(0.5, 1.5, 6), jnp.float32),
              "beta": jnp.asarray(RNG.normal(size=6), jnp.float32)}
    ref = torch.nn.functional.layer_norm(_t(x), (6,), _t(params["gamma"]), _t(params["beta"]),
                                         eps=1e-3)
    chex.assert_trees_all_close(layer.apply(params, state, x)[0], ref.numpy(), rtol=1e-5,
                                atol=1e-5)


def test_prelu_matches_torch():
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    layer = jl.PReLU()
    params, _ = layer.init(KEY, x.shape)
    alpha = np.array([0.1, 0.25, -0.5], np.float32)
    ref = torch.nn.functional.prelu(_t(x), _t(alpha))
    chex.assert_trees_all_close(layer.apply({"alpha": alpha}, {}, x)[0], ref.numpy(), rtol=1e-6)
    chex.assert_trees_all_close(params["alpha"], np.asarray([0.25] * 3), rtol=1e-7)
    shared = jl.PReLU(shared=True)
    chex.assert_shape(shared.init(KEY, x.shape)[0]["alpha"], (1,))
    ref = torch.nn.functional.prelu(_t(x), _t([0.3]))
    chex.assert_trees_all_close(shared.apply({"alpha": jnp.array([0.3])}, {}, x)[0],
                                ref.numpy(), rtol=1e-6)


def test_dropout_is_inverted_and_keeps_the_mean():
    """000-e4 (dropout part): x̂ = 0 with probability p, else x / (1 - p)."""
    x = jnp.ones((200, 500))
    y, _ = jl.Dropout(0.3).apply({}, {}, x, key=KEY, training=True)
    y = np.asarray(y)
    kept = y != 0
    chex.assert_trees_all_close(y[kept], 1 / 0.7, rtol=1e-6)  # x / (1 - p)
    assert abs(kept.mean() - 0.7) < 0.01  # 100,000 draws: 4.5 standard errors = 0.0065
    assert abs(y.mean() - 1.0) < 0.02
    chex.assert_trees_all_equal(jl.Dropout(0.3).apply({}, {}, x)[0], x)  # inference
    inf = jnp.full((4, 4), jnp.inf)
    y_inf = jl.Dropout(0.5).apply({}, {}, inf, key=KEY, training=True)[0]
    assert not np.isnan(np.asarray(y_inf)).any()  # a dropped inf is 0, not nan


def test_flatten_and_reshape_against_numpy():
    x = RNG.normal(size=(2, 7, 7, 5)).astype(np.float32)
    chex.assert_trees_all_equal(jl.Flatten().apply({}, {}, x)[0], x.reshape(2, 245))
    chex.assert_trees_all_equal(jl.Reshape((35, -1)).apply({}, {}, x)[0], x.reshape(2, 35, 7))
    assert jl.output_shape(jl.Flatten(), (1, 7, 7, 512)) == (1, 25_088)  # seed 004, 004-S2-e5


# --- bad input: each raises at trace (or construction) time naming the layer ---------------

def _init_apply(layer, init_shape, x, **kw):
    params, state = layer.init(KEY, init_shape)
    return layer.apply(params, state, x, **kw)


@pytest.mark.parametrize("layer, init_shape, x, error, match", [
    (jl.Dense(3), (2, 4), jnp.ones((2, 5)), ValueError,
     r"Dense: input must have 4 features on the last axis, got shape \(2, 5\)"),
    (jl.Dense(3), (2, 4), jnp.ones(()), ValueError, r"Dense: input must have rank >= 1"),
    (jl.Dense(3), (2, 4), jnp.ones((2, 4), jnp.int32), TypeError,
     r"Dense: input must have a floating dtype, got int32"),
    (jl.BatchNorm(), (2, 4), jnp.ones((4,)), ValueError,
     r"BatchNorm: input must have rank >= 2 \(N, ..., C\), got shape \(4,\)"),
    (jl.BatchNorm(), (2, 4), jnp.ones((2, 3)), ValueError,
     r"BatchNorm: input must have 4 features on the last axis, got shape \(2, 3\)"),
    (jl.LayerNorm(), (2, 4), jnp.ones((2, 4), jnp.int32), TypeError, r"LayerNorm: .*floating"),
    (jl.PReLU(), (2, 4), jnp.ones((2, 5)), ValueError, r"PReLU: input must have 4 features"),
    (jl.Flatten(), (2, 4), jnp.ones((4,)), ValueError, r"Flatten: input must have rank >= 2"),
    (jl.Reshape((3,)), (2, 4), jnp.ones((2, 4)), ValueError,
     r"Reshape: cannot reshape an example of shape \(4,\) \(4 values\) to \(3,\)"),
    (jl.Activation("relu"), (2, 4), jnp.ones((2, 4), jnp.int32), TypeError,
     r"Activation: input must have a floating dtype"),
])
def test_bad_input_raises_naming_the_layer(layer, init_shape, x, error, match):
    with pytest.raises(error, match=match):
        _init_apply(layer, init_shape, x)
    with pytest.raises(error, match=match):  # and the same under jit, at trace time
        params, state = layer.init(KEY, init_shape)
        jax.jit(lambda p, s, v: layer.apply(p, s, v)[0])(params, state, x)


def test_dropout_training_without_key_raises():
    for rate in (0.0, 0.5):
        with pytest.raises(ValueError, match="Dropout: training=True needs a PRNG key"):
            jl.Dropout(rate).apply({}, {}, jnp.ones((2, 2)), training=True)


@pytest.mark.parametrize("make, match", [
    (lambda: jl.Dropout(1.5), r"Dropout: rate must be a float in \[0, 1\), got 1.5"),
    (lambda: jl.Dropout(-0.1), r"Dropout: rate must be a float in \[0, 1\), got -0.1"),
    (lambda: jl.Dropout(1.0), r"Dropout: rate must be a float in \[0, 1\), got 1.0"),
    (lambda: jl.Activation("swishy"), r"Activation: activation must be one of \["),
    (lambda: jl.Dense(4, activation="rellu"), r"Dense: activation must be one of"),
    (lambda: jl.Dense(0), r"Dense: features must be a positive int, got 0"),
    (lambda: jl.Activation("relu", alpha=0.1), r"Activation: activation 'relu' takes options"),
    (lambda: jl.BatchNorm(momentum=1.0), r"BatchNorm: momentum must be a float in \[0, 1\)"),
    (lambda: jl.LayerNorm(epsilon=0), r"LayerNorm: epsilon must be a positive number"),
    (lambda: jl.Reshape((2, -1, -1)), r"Reshape: target_shape must be"),
])
def test_bad_hyperparameters_fail_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_params_that_do_not_match_the_input_shape():
    layer = jl.Dense(3)
    params, state = layer.init(KEY, (2, 8))  # built for 8 features
    with pytest.raises(ValueError, match=r"Dense: input must have 8 features .* got shape \(2, 6\)"):
        layer.apply(params, state, jnp.ones((2, 6)))
