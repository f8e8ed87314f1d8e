"""jl.path_mask / jl.frozen / jl.path_strings: masks by path, and frozen params that never change."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlayers as jl
from jaxlayers import frozen, label_params, path_mask, path_strings

MODEL = jl.serial(features=jl.serial(jl.Dense(4, activation="tanh")),
                  head=jl.serial(jl.Dense(3, activation="tanh"), jl.Dense(2)))


def _params():
    params, state = MODEL.init(jax.random.key(0), (5, 3))
    # a -0.0 weight: set_to_zero's +0.0 update would flip its sign bit, frozen's must not
    params["features"][0]["bias"] = params["features"][0]["bias"].at[0].set(-0.0)
    return params, state


def _bits(tree):
    return [np.asarray(a).view(np.uint32).copy() for a in jax.tree.leaves(tree)]


def test_path_strings_join_keys_and_positions_like_summary():
    params, _ = _params()
    assert path_strings(params) == ["features/0/bias", "features/0/kernel", "head/0/bias",
                                    "head/0/kernel", "head/1/bias", "head/1/kernel"]


def test_freeze_mask_has_the_params_structure():
    params, _ = _params()
    mask = path_mask(params, lambda path: path.startswith("features/"))
    assert jax.tree.structure(mask) == jax.tree.structure(params)
    assert mask["features"][0] == {"bias": True, "kernel": True}
    assert mask["head"][1] == {"bias": False, "kernel": False}
    kernels = path_mask(params, lambda path: path.endswith("kernel"))
    assert [p for p, m in zip(path_strings(params), jax.tree.leaves(kernels)) if m] == [
        "features/0/kernel", "head/0/kernel", "head/1/kernel"]
    labels = label_params(params, lambda path: path.startswith("head/1/"))
    assert labels["head"][1]["kernel"] == "frozen" and labels["head"][0]["bias"] == "trainable"


def test_freeze_errors():
    params, _ = _params()
    with pytest.raises(ValueError, match="path_mask: predicate matched none.*features/0/bias"):
        path_mask(params, lambda path: path.startswith("feature/"))  # typo
    with pytest.raises(TypeError, match="path_mask: predicate must be a callable"):
        path_mask(params, "features/")
    with pytest.raises(TypeError, match="path_mask: predicate must return a bool"):
        path_mask(params, lambda path: path if "head" in path else None)
    with pytest.raises(TypeError, match="frozen: optimizer must be"):
        frozen(0.1, params, lambda path: True)


def test_frozen_params_stay_bit_identical_under_adam_while_the_rest_train():
    params, _ = _params()
    before = _bits(params["features"])
    opt = frozen(optax.adam(1e-2), params, lambda path: path.startswith("features/"))
    grads = jax.tree.map(jnp.ones_like, params)

    @jax.jit
    def step(p, s):
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    new, s = params, opt.init(params)
    for _ in range(5):
        new, s = step(new, s)
    assert all(np.array_equal(a, b) for a, b in zip(before, _bits(new["features"])))
    assert np.signbit(new["features"][0]["bias"][0])
    assert all(bool(jnp.all(a != b)) for a, b in
               zip(jax.tree.leaves(params["head"]), jax.tree.leaves(new["head"])))


def test_frozen_works_with_make_train_step():
    params, state = _params()
    before = _bits(params["features"])
    opt = frozen(optax.adam(1e-2), params, lambda path: path.startswith("features/"))
    loss = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)
    step = jl.train.make_train_step(MODEL, loss, opt, donate=False)
    x = jax.random.normal(jax.random.key(1), (5, 3))
    y = jnp.array([0, 1, 0, 1, 1])
    new, s, opt_state = params, state, opt.init(params)
    for _ in range(3):
        new, s, opt_state, _ = step(new, s, opt_state, x, y, jax.random.key(2))
    assert all(np.array_equal(a, b) for a, b in zip(before, _bits(new["features"])))
    assert not np.array_equal(params["head"][1]["kernel"], new["head"][1]["kernel"])
