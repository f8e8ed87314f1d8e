"""Every registered layer through every check of `jl.testing` (one check per test), and
proof that the battery catches broken layers."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl
from jaxlayers import testing
from jaxlayers._checks import as_spec
from jaxlayers.grad_check import GradcheckError, random_input
from registry import CASES

KEY = jax.random.key(0)
# float32 apply against a float64 (or float32 PyTorch) reference: summation order and
# rounding only
REFERENCE_RTOL, REFERENCE_ATOL = 1e-5, 1e-5
over_cases = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])


def _layer(case, check):
    if check in case.skip:
        pytest.skip(case.skip[check])
    return case.build()


@over_cases
def test_shapes(case):
    testing.check_shapes(_layer(case, "shapes"), case.input_shape, KEY,
                         input_dtype=case.input_dtype)


@over_cases
def test_transforms(case):
    testing.check_transforms(_layer(case, "transforms"), case.input_shape, KEY,
                             input_dtype=case.input_dtype)


@over_cases
def test_keys(case):
    testing.check_keys(_layer(case, "keys"), case.input_shape, KEY,
                       input_dtype=case.input_dtype, random=case.random)


@over_cases
def test_bad_inputs(case):
    layer = _layer(case, "bad_inputs")
    assert case.bad_inputs, f"{case.id}: register bad inputs, or skip with a reason"
    testing.check_bad_inputs(layer, case.input_shape, KEY, case.bad_inputs,
                             input_dtype=case.input_dtype)


@over_cases
def test_jvp(case):
    testing.check_jvp(_layer(case, "jvp"), case.input_shape, KEY,
                      input_dtype=case.input_dtype)


@over_cases
def test_second_order(case):
    testing.check_second_order(_layer(case, "second_order"), case.input_shape, KEY,
                               input_dtype=case.input_dtype)


@over_cases
def test_gradients(case):
    testing.check_gradients(_layer(case, "gradients"), case.input_shape, KEY,
                            input_dtype=case.input_dtype)


@over_cases
def test_bfloat16(case):
    testing.check_bfloat16(_layer(case, "bfloat16"), case.input_shape, KEY,
                           input_dtype=case.input_dtype)


def _perturbed(params, scale=0.1):
    """params + scale * N(0, 1): init's zero biases, unit gammas and zero betas would hide a
    dropped bias or a swapped gamma/beta from the reference."""
    rng = np.random.default_rng(2)

    def nudge(a):
        a = np.asarray(a)
        if not np.issubdtype(a.dtype, np.floating):
            return a
        return (a + scale * rng.standard_normal(a.shape)).astype(a.dtype)

    return jax.tree.map(nudge, params)


@over_cases
def test_reference(case):
    """apply agrees with the case's independent reference (NumPy or PyTorch)."""
    assert case.reference is not None, f"{case.id}: register a reference"
    layer = case.build()
    params, state = layer.init(KEY, as_spec(case.input_shape, case.input_dtype))
    params = _perturbed(params)
    x = random_input(case.input_shape, case.input_dtype, np.random.default_rng(0))
    modes = (False,) if case.random else (False, True)
    for training in modes:
        y, _ = layer.apply(params, state, x, key=jax.random.key(1), training=training)
        want = case.reference(jax.tree.map(np.asarray, params),
                              jax.tree.map(np.asarray, state), x, training)
        chex.assert_trees_all_close(y, want, rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL,
                                    custom_message=f"{case.id}, training={training}")


# ------------------------------------------------------------------ the registry itself

# Public names that build no layer, or that are registered through another name.
NOT_LAYERS = {
    "Cell", "GRUCell", "LSTMCell", "SimpleRNNCell",  # one-step cells for lax.scan, not Layers
    "CheckpointManager", "EarlyStopping", "GradcheckError", "TrainState", "Layer", "Masked", "Summary", "SummaryRow",  # types
    "Sequential",  # the alias of serial, registered as serial
    "CRFOutput",  # the type jl.CRF returns
    "DynamicLossScale", "Policy",  # mixed-precision values (jl.mixed_precision is the layer)
}


def _public_layers():
    """Every callable in jl.__all__ that builds a Layer: constructors and combinators."""
    import inspect
    names = []
    for name in jl.__all__:
        value = getattr(jl, name)
        if name in NOT_LAYERS or inspect.ismodule(value) or not callable(value):
            continue
        if name[0].isupper() or name in ("compose", "fanout", "mixed_precision", "parallel",
                                         "repeat", "residual", "serial"):
            names.append(name)
    return names


def test_every_public_layer_is_registered():
    registered = {case.factory for case in CASES}
    missing = [name for name in _public_layers() if getattr(jl, name) not in registered]
    assert not missing, f"public layers without a Case in tests/registry.py: {missing}"


def test_every_case_has_an_independent_reference():
    # the battery alone compares a layer with itself (jit vs eager, AD vs differences);
    # the reference is what compares it with something else
    missing = [case.id for case in CASES if case.reference is None]
    assert not missing, f"registry cases without a reference: {missing}"


def test_case_ids_are_unique_and_skips_name_real_checks():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for case in CASES:
        assert set(case.skip) <= set(testing.CHECKS), (case.id, case.skip)


def test_every_bad_input_message_names_a_layer():
    # STYLE.md §4: "<Layer>: <what> must be <expected>, got <received>."
    for case in CASES:
        for _, exc_type, pattern in case.bad_inputs:
            assert exc_type in (ValueError, TypeError), (case.id, exc_type)
            assert re.match(r"[A-Za-z]\w*: ", pattern), (case.id, pattern)


# ------------------------------------------------------------- user layers, good and bad

def _last_axis(input_spec):
    return input_spec.shape[-1]  # init always receives a jax.ShapeDtypeStruct


def _scaled_tanh(*, wrong_vjp=False, wrong_jvp=False, wrong_second=False,
                 wrong_second_jvp=False):
    """y = tanh(x * a) with a learned per-feature a, optionally with a broken rule."""

    @jax.custom_vjp
    def bad_vjp(x, a):
        return jnp.tanh(x * a)

    def fwd(x, a):
        y = jnp.tanh(x * a)
        return y, (x, a, y)

    def bwd(res, g):
        x, a, y = res
        d = g * (1 - y * y)
        return d * a, d * x * 1.1  # da off by 10%

    bad_vjp.defvjp(fwd, bwd)

    @jax.custom_jvp
    def bad_jvp(x, a):
        return jnp.tanh(x * a)

    @bad_jvp.defjvp
    def bad_jvp_rule(primals, tangents):
        (x, a), (dx, da) = primals, tangents
        y = jnp.tanh(x * a)
        return y, (1 - y * y) * (dx * a - x * da)  # wrong sign on the da term

    @jax.custom_vjp
    def cube(x, a):  # y = (x * a)**3 with a first derivative blind to its own derivative
        return (x * a) ** 3

    def cube_fwd(x, a):
        return (x * a) ** 3, (x, a)

    def cube_bwd(res, g):
        x, a = res
        d = g * 3 * jax.lax.stop_gradient((x * a) ** 2)  # right value, wrong derivative
        return d * a, d * x

    cube.defvjp(cube_fwd, cube_bwd)

    @jax.custom_jvp
    def cube_jvp(x, a):  # the same mistake in a custom_jvp rule
        return (x * a) ** 3

    @cube_jvp.defjvp
    def cube_jvp_rule(primals, tangents):
        (x, a), (dx, da) = primals, tangents
        slope = 3 * jax.lax.stop_gradient((x * a) ** 2)
        return (x * a) ** 3, slope * (dx * a + x * da)

    def init(key, input_shape):
        c = _last_axis(input_shape)
        return {"a": 1.0 + 0.1 * jax.random.normal(key, (c,))}, {}

    def apply(params, state, x, *, key=None, training=False):
        a = jnp.broadcast_to(params["a"], x.shape)
        if wrong_vjp:
            return bad_vjp(x, a), state
        if wrong_jvp:
            return bad_jvp(x, a), state
        if wrong_second:
            return cube(x, a), state
        if wrong_second_jvp:
            return cube_jvp(x, a), state
        return jnp.tanh(x * a), state

    return jl.Layer(init, apply)


def test_check_layer_passes_a_correct_user_layer_end_to_end():
    testing.check_layer(_scaled_tanh(), (2, 3), KEY,
                        checks=[c for c in testing.CHECKS if c != "bad_inputs"])


def test_bad_inputs_check_refuses_an_error_that_does_not_name_the_layer():
    # the user layer has no input checks: JAX's own broadcasting error is all it raises
    bad = [((2, 4), ValueError, r"ScaledTanh: input must have 3 features")]
    with pytest.raises(AssertionError, match=r"Layer on float32\(2, 3\): apply\(training="
                                             r"False\) on bad input float32\(2, 4\) raised "
                                             r"ValueError with message .*which does not match"):
        testing.check_layer(_scaled_tanh(), (2, 3), KEY, bad_inputs=bad, checks="bad_inputs")


def test_check_layer_runs_every_check_on_a_registered_layer():
    testing.check_layer(jl.serial(jl.Dense(3), jl.Dropout(0.5)), (2, 4), KEY, random=True,
                        bad_inputs=[((2, 5), ValueError, r"Dense: .*4 features")])


def test_gradients_check_catches_a_wrong_custom_vjp():
    with pytest.raises(GradcheckError, match=r"Layer: .*\n  params/a: 3 of 3 "
                                             r"coordinates off; worst"):
        testing.check_layer(_scaled_tanh(wrong_vjp=True), (2, 3), KEY, checks="gradients")


def test_jvp_check_catches_a_wrong_custom_jvp():
    with pytest.raises(AssertionError, match="jax.jvp disagrees with central finite "
                                             "differences"):
        testing.check_jvp(_scaled_tanh(wrong_jvp=True), (2, 3), KEY)


def test_jvp_check_reports_a_custom_vjp_layer_it_cannot_differentiate_forward():
    with pytest.raises(AssertionError, match=r"forward-mode differentiation \(jax.linearize\) "
                                             r"of apply \(float64\) raised TypeError: can.t "
                                             r"apply forward-mode"):
        testing.check_jvp(_scaled_tanh(wrong_vjp=True), (2, 3), KEY)


@pytest.mark.parametrize("rule", ["custom_vjp", "custom_jvp"])
def test_second_order_check_catches_a_wrong_second_derivative(rule):
    wrong = "wrong_second" if rule == "custom_vjp" else "wrong_second_jvp"
    layer = _scaled_tanh(**{wrong: True})
    testing.check_gradients(layer, (2, 3), KEY)  # first derivatives are right
    with pytest.raises(AssertionError, match=r"second derivatives are wrong \(float64\): for "
                                             r"random unit directions v, w, w·H·v by"):
        testing.check_second_order(layer, (2, 3), KEY)


def test_shapes_check_catches_params_that_depend_on_the_batch_size():
    def init(key, input_shape):
        return {"w": jnp.ones(tuple(getattr(input_shape, "shape", input_shape))[:1])}, {}

    def apply(params, state, x, *, key=None, training=False):
        return x * jnp.sum(params["w"]), state

    with pytest.raises(AssertionError, match="params/state depend on the batch size"):
        testing.check_shapes(jl.Layer(init, apply), (2, 3), KEY)


def test_shapes_check_catches_state_that_changes_dtype():
    def init(key, input_shape):
        return {}, {"count": jnp.zeros((), jnp.int32)}

    def apply(params, state, x, *, key=None, training=False):
        return x, {"count": state["count"] + 1.0}  # promotes the counter to float32

    with pytest.raises(AssertionError, match=r"apply\(training=False\) returns state"):
        testing.check_shapes(jl.Layer(init, apply), (2, 3), KEY)


def test_shapes_check_catches_an_output_that_loses_the_batch_axis():
    layer = jl.Layer(lambda key, shape: ({}, {}),
                     lambda p, s, x, *, key=None, training=False: (x.reshape(6, -1), s))
    with pytest.raises(AssertionError, match="does not keep the batch axis first"):
        testing.check_shapes(layer, (2, 3, 2), KEY)


def test_transforms_check_catches_a_layer_that_cannot_be_jitted():
    def apply(params, state, x, *, key=None, training=False):
        return (x if float(jnp.sum(x)) > 0 else -x), state  # Python branch on a value

    with pytest.raises(AssertionError, match=r"Layer on float32\(2, 3\): apply\(training="
                                             r"True\) raised ConcretizationTypeError"):
        testing.check_transforms(jl.Layer(lambda k, s: ({}, {}), apply), (2, 3), KEY)


def test_transforms_check_catches_a_wrong_batching_rule():
    @jax.custom_batching.custom_vmap
    def double(x):
        return 2 * x

    @double.def_vmap
    def rule(axis_size, in_batched, x):
        return -2 * x, in_batched[0]  # wrong sign under vmap

    def apply(params, state, x, *, key=None, training=False):
        return (2 * x if training else double(x)), state

    with pytest.raises(AssertionError, match=r"vmap\(apply\)\[0\] vs apply on slice 0"):
        testing.check_transforms(jl.Layer(lambda k, s: ({}, {}), apply), (2, 3), KEY)


def test_keys_check_catches_randomness_that_ignores_the_key_or_the_flag():
    def noisy(params, state, x, *, key=None, training=False):
        k = jax.random.key(0) if key is None else key
        return x + jax.random.normal(k, x.shape), state  # random even at inference

    layer = jl.Layer(lambda k, s: ({}, {}), noisy)
    with pytest.raises(AssertionError, match="output changes with the key"):
        testing.check_keys(layer, (2, 3), KEY, random=False)
    with pytest.raises(AssertionError, match=r"key=None\) did not raise"):
        testing.check_keys(layer, (2, 3), KEY, random=True)
    with pytest.raises(AssertionError, match="identical output for 4 different keys"):
        testing.check_keys(jl.Dense(2), (2, 3), KEY, random=True)


def test_bfloat16_check_catches_a_layer_that_upcasts():
    layer = jl.Layer(lambda k, s: ({}, {}),
                     lambda p, s, x, *, key=None, training=False: (x.astype(jnp.float32), s))
    with pytest.raises(AssertionError, match="bfloat16 input gives float32 output"):
        testing.check_bfloat16(layer, (2, 3), KEY)


def test_bad_inputs_check_catches_the_wrong_exception_and_message():
    with pytest.raises(AssertionError, match="raised ValueError: .*expected TypeError"):
        testing.check_bad_inputs(jl.Dense(2), (2, 3), KEY, [((2, 4), TypeError, "Dense")])
    with pytest.raises(AssertionError, match="does not match 'Dense: rank'"):
        testing.check_bad_inputs(jl.Dense(2), (2, 3), KEY, [((2, 4), ValueError,
                                                              "Dense: rank")])


def test_check_layer_refuses_unknown_check_names():
    with pytest.raises(ValueError, match=r"check_layer: checks must be 'all' or names"):
        testing.check_layer(jl.Dense(2), (2, 3), KEY, checks=["shape"])
