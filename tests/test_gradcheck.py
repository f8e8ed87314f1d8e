"""jl.gradcheck and jl.gradcheck_layer: pass on correct gradients, name the leaf and the
coordinate of a wrong one, sample large leaves deterministically, skip integer leaves."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl
from jaxlayers import grad_check
from jaxlayers.grad_check import GradcheckError, gradcheck, gradcheck_layer

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)


def _normal(*shape):
    return RNG.normal(size=shape).astype(np.float32)


def _scaled_on(index, factor):
    """f(x) = sin(x) elementwise, whose custom_vjp scales the gradient at `index`."""
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    def fwd(x):
        return jnp.sin(x), x

    def bwd(x, g):
        scale = jnp.ones(x.shape, x.dtype).at[index].set(factor)
        return (g * jnp.cos(x) * scale,)

    f.defvjp(fwd, bwd)
    return f


def test_public_names_are_exported_flat():
    assert jl.gradcheck is gradcheck
    assert jl.gradcheck_layer is gradcheck_layer
    assert jl.GradcheckError is GradcheckError
    assert issubclass(GradcheckError, AssertionError)


def test_passes_on_pytrees_several_args_and_vector_output():
    params = {"w": _normal(3, 4), "b": _normal(4)}
    x = _normal(2, 3)
    report = gradcheck(lambda p, x: jnp.tanh(x @ p["w"] + p["b"][None, :]), params, x)
    assert report.ok and report.projected
    assert [c.path for c in report.leaves] == ["args/0/b", "args/0/w", "args/1"]
    assert [(c.checked, c.size) for c in report.leaves] == [(4, 4), (12, 12), (6, 6)]
    assert max(c.max_rel_err for c in report.leaves) < 1e-7
    text = str(report)
    assert text.startswith("gradcheck of a random projection <fn(args), v>: 3 leaves, "
                           "22 coordinates")
    assert "args/0/w  (3, 4)  12/12" in text


def test_passes_on_scalar_and_tuple_outputs():
    x, y = _normal(5), _normal(5)
    report = gradcheck(lambda x, y: jnp.sum(jnp.exp(x) * y), x, y)
    assert report.ok and not report.projected
    # a tuple output with an integer leaf: only the floating leaves are projected
    report = gradcheck(lambda x: (x ** 3, jnp.argmax(x), {"s": jnp.sum(jnp.sin(x))}), x)
    assert report.ok and report.projected


def test_computes_in_float64_whatever_the_input_dtype():
    dtypes = []

    def f(x, h):
        dtypes.append((x.dtype, h.dtype))
        return jnp.sum(jnp.sin(x) * h)

    report = gradcheck(f, _normal(3), _normal(3).astype(jnp.bfloat16))
    assert report.ok and set(dtypes) == {(np.dtype("float64"), np.dtype("float64"))}
    assert jnp.zeros(1).dtype == jnp.float32  # x64 is switched off again afterwards


def test_raises_on_a_gradient_off_by_ten_percent_and_names_leaf_and_coordinate():
    f = _scaled_on((1, 2), 1.1)
    x = _normal(2, 3)
    with pytest.raises(GradcheckError, match=r"gradcheck: the analytic gradient \(jax.grad\) "
                                             r"and central finite differences disagree on 1 "
                                             r"of 2 leaves:\n  args/1/x: 1 of 6 "
                                             r"coordinates off; worst at index \(1, 2\)") as err:
        gradcheck(lambda a, b: jnp.sum(a * f(b["x"])), x, {"x": x})
    (bad,) = err.value.report.failures
    assert bad.path == "args/1/x" and bad.worst_index == (1, 2)
    chex.assert_trees_all_close(bad.worst_analytic / bad.worst_numerical, 1.1, rtol=1e-6)


def test_raises_on_a_wrong_sign_on_one_coordinate():
    f = _scaled_on((4,), -1.0)
    with pytest.raises(GradcheckError, match=r"args/0: 1 of 7 coordinates off; worst "
                                             r"at index \(4,\)"):
        gradcheck(f, _normal(7))


def test_raises_on_a_non_finite_gradient():
    with pytest.raises(GradcheckError, match=r"args/0: 1 non-finite analytic entries"):
        gradcheck(lambda x: jnp.sum(jnp.sqrt(jnp.abs(x))), np.array([0.0, 1.0, 2.0]))


def test_a_float32_function_fails_with_a_hint():
    with pytest.raises(GradcheckError, match="fn returned float32 output from float64 "
                                             "inputs"):
        gradcheck(lambda x: jnp.sin(x.astype(jnp.float32)), _normal(4))


def test_large_leaves_are_sampled_deterministically_by_seed():
    w, x = _normal(40, 50), _normal(2, 40)

    def fn(w, x):
        return jnp.tanh(x @ w)

    first = gradcheck(fn, w, x, max_coords=16)
    again = gradcheck(fn, w, x, max_coords=16)
    other = gradcheck(fn, w, x, max_coords=16, seed=1)
    big, small = first.leaves
    assert (big.checked, big.size) == (16, 2000) and (small.checked, small.size) == (16, 80)
    assert first == again
    assert other.leaves[0].coords != big.coords
    assert list(big.coords) == sorted(set(big.coords))
    assert gradcheck(fn, w, x, max_coords=None).leaves[0].checked == 2000


def test_chunked_evaluation_matches_one_vmapped_batch(monkeypatch):
    x = _normal(3, 5)

    def fn(x):
        return jnp.cumsum(jnp.sin(x), axis=1)

    whole = gradcheck(fn, x)
    monkeypatch.setattr(grad_check, "_MAX_BATCH_ENTRIES", 4 * x.size)  # chunks of 4
    chunked = gradcheck(fn, x)
    assert chunked.ok and chunked.leaves[0].coords == whole.leaves[0].coords
    chex.assert_trees_all_close(chunked.leaves[0].max_abs_err, whole.leaves[0].max_abs_err,
                                atol=1e-12, rtol=1e-7)


def test_integer_and_key_arguments_are_held_fixed():
    ids = np.array([0, 2, 2, 1], np.int32)

    def fn(table, ids, key):
        noise = jax.random.normal(key, (4, 3), table.dtype)
        return jnp.sum(jnp.sin(table[ids]) * noise)

    report = gradcheck(fn, _normal(3, 3), ids, KEY)
    assert report.ok and [c.path for c in report.leaves] == ["args/0"]


def test_refuses_nothing_to_differentiate_and_bad_settings():
    with pytest.raises(ValueError, match="gradcheck: no floating-point array among the "
                                         "arguments"):
        gradcheck(lambda i: jnp.sum(i * 1.0), np.arange(3))
    with pytest.raises(TypeError, match="gradcheck: fn must return floating-point output"):
        gradcheck(lambda x: jnp.argmax(x), _normal(3))
    with pytest.raises(ValueError, match="gradcheck: eps must be a positive number, got 0"):
        gradcheck(jnp.sum, _normal(3), eps=0)
    with pytest.raises(ValueError, match="gradcheck: max_coords must be a positive int or "
                                         "None, got 0"):
        gradcheck(jnp.sum, _normal(3), max_coords=0)


def test_gradcheck_layer_on_dense_checks_params_and_input():
    report = gradcheck_layer(jl.Dense(4), (2, 3), KEY)
    assert report.ok
    assert [(c.path, c.shape) for c in report.leaves] == [
        ("params/bias", (4,)), ("params/kernel", (3, 4)), ("x", (2, 3))]


def test_gradcheck_layer_through_batchnorm_statistics_in_training():
    model = jl.serial(jl.Dense(4), jl.BatchNorm(), jl.Dense(3, activation="tanh"))
    report = gradcheck_layer(model, (5, 3), KEY, training=True)
    assert report.ok
    assert report.leaves[2].path == "params/1/beta" and report.leaves[-1].path == "x"
    # the bias before BatchNorm cancels out: its gradient is zero, and checked as such
    assert report.leaves[0].path == "params/0/bias"
    assert report.leaves[0].max_abs_err < 1e-9


def test_gradcheck_layer_freezes_dropout_with_one_key():
    model = jl.serial(jl.Dense(6), jl.Dropout(0.5))
    first = gradcheck_layer(model, (2, 3), KEY, training=True)
    assert first.ok and first == gradcheck_layer(model, (2, 3), KEY, training=True)


def test_gradcheck_layer_with_integer_input_checks_only_params():
    def init(key, input_shape):
        return {"table": jax.random.normal(key, (4, 3))}, {}

    def apply(params, state, ids, *, key=None, training=False):
        return jnp.tanh(params["table"][ids]), state

    report = gradcheck_layer(jl.Layer(init, apply), jax.ShapeDtypeStruct((2, 5), jnp.int32),
                             KEY)
    assert report.ok and [c.path for c in report.leaves] == ["params/table"]


def test_gradcheck_layer_names_the_layer_in_its_error():
    f = _scaled_on((0, 1), 1.5)
    layer = jl.Layer(lambda k, s: ({}, {}),
                     lambda p, s, x, *, key=None, training=False: (f(x), s), name="Wobbly")
    with pytest.raises(GradcheckError, match=r"^Wobbly: .*\n  x: 1 of 6 coordinates off; "
                                             r"worst at index \(0, 1\)"):
        gradcheck_layer(layer, (2, 3), KEY)
