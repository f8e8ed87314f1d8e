"""jaxlayers.regularizers: penalties over kernels only, against a hand NumPy sum."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import DictKey, GetAttrKey, SequenceKey

import jaxlayers as jl

R = jl.regularizers


@pytest.fixture(scope="module")
def params():
    model = jl.serial(jl.Dense(3), jl.BatchNorm(), jl.Dense(2))
    params, _ = model.init(jax.random.key(0), (4, 5))
    # random values everywhere (gamma/beta/bias too), so a wrongly included leaf shows
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(1)
    leaves = [jnp.asarray(rng.normal(size=w.shape), jnp.float32) for w in leaves]
    return jax.tree.unflatten(treedef, leaves)


def _kernels_by_hand(params):
    assert set(params[0]) == {"kernel", "bias"} and set(params[1]) == {"gamma", "beta"}
    return [np.asarray(params[i]["kernel"], np.float64) for i in (0, 2)]


def test_l1_l2_l1l2_match_numpy(params):
    ks = _kernels_by_hand(params)
    s1 = sum(np.abs(k).sum() for k in ks)
    s2 = sum((k ** 2).sum() for k in ks)
    chex.assert_trees_all_close(R.l1(0.01)(params), 0.01 * s1, rtol=1e-6)
    chex.assert_trees_all_close(R.l2(0.01)(params), 0.01 * s2, rtol=1e-6)  # no ½
    chex.assert_trees_all_close(R.l1_l2(l1=0.01, l2=0.1)(params), 0.01 * s1 + 0.1 * s2,
                                rtol=1e-6)
    everything = sum((np.asarray(w, np.float64) ** 2).sum() for w in jax.tree.leaves(params))
    assert abs(float(R.l2(1.0)(params)) - everything) > 1e-3  # bias/gamma/beta excluded


def test_gradient_is_on_kernels_only(params):
    g = jax.jit(jax.grad(R.l2(0.5)))(params)
    chex.assert_trees_all_close(g[0]["kernel"], 2 * 0.5 * params[0]["kernel"], rtol=1e-6)
    chex.assert_trees_all_close(g[2]["kernel"], 2 * 0.5 * params[2]["kernel"], rtol=1e-6)
    for w in (g[0]["bias"], g[1]["gamma"], g[1]["beta"], g[2]["bias"]):
        chex.assert_trees_all_equal(w, np.zeros(w.shape, np.float32))


def test_no_kernels_and_low_precision():
    assert float(R.l2(1.0)({"bias": jnp.ones(3)})) == 0.0
    w = jnp.full((4, 4), 3.0, jnp.bfloat16)
    got = R.l2(1.0)({"kernel": w})
    chex.assert_type(got, jnp.float32)
    assert float(got) == 144.0


def test_is_kernel():
    assert R.is_kernel((SequenceKey(0), DictKey("kernel")))
    for name in ("recurrent_kernel", "depthwise_kernel", "pointwise_kernel"):
        assert R.is_kernel((DictKey("cell"), DictKey(name)))
    assert R.is_kernel((GetAttrKey("kernel"),))
    assert R.is_kernel(("head", "kernel"))
    for name in ("bias", "gamma", "beta", "embeddings", "kernel_size"):
        assert not R.is_kernel((DictKey(name),))
    assert not R.is_kernel((DictKey("kernel"), SequenceKey(0)))
    assert not R.is_kernel(())


def test_is_kernel_on_a_flattened_model(params):
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0] if R.is_kernel(p)]
    assert [jax.tree_util.keystr(p) for p in paths] == ["[0]['kernel']", "[2]['kernel']"]


@pytest.mark.parametrize("make, match", [
    (lambda: R.l1(-0.1), "l1: lam must be a finite number >= 0, got -0.1"),
    (lambda: R.l2(-1e-4), "l2: lam must be a finite number >= 0, got -0.0001"),
    (lambda: R.l2(float("nan")), "l2: lam must be"),
    (lambda: R.l1_l2(l1=0.1, l2=-1.0), "l1_l2: l2 must be a finite number >= 0, got -1.0"),
    (lambda: R.l1_l2(l1=-1.0, l2=0.1), "l1_l2: l1 must be"),
])
def test_negative_lambda_is_an_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_is_kernel_takes_the_path_strings_that_freeze_uses():
    from jaxlayers.regularizers import is_kernel
    assert is_kernel("features/conv1/kernel") and is_kernel("0/recurrent_kernel")
    assert not is_kernel("features/conv1/bias") and not is_kernel("kernel/gamma")
    model = jl.serial(features=jl.Dense(3), head=jl.Dense(2))
    params, _ = model.init(jax.random.key(0), (1, 4))
    mask = jl.path_mask(params, is_kernel)
    assert mask["features"]["kernel"] and not mask["features"]["bias"]
