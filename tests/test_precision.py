"""jl.Policy, jl.mixed_precision and jl.DynamicLossScale: dtypes in and out, compute really
in bfloat16, float32 statistics in norms and softmax, loss scaling against a hand-written
loop, and bf16 LeNet-5 / transformer training on the digits against float32."""

import functools
import os
import tempfile

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

import jaxlayers as jl
from jaxlayers import testing

KEY = jax.random.key(0)
BF16 = jl.Policy(params="float32", compute="bfloat16", output="float32")
F16 = jl.Policy(compute="float16")
XENT = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)
# one bfloat16 rounding is at most half an ulp, 2**-9 relative (8 significant bits)
BF16_ULP = 2.0 ** -8


def _dtypes(tree):
    return jax.tree.map(lambda a: jnp.dtype(a.dtype), tree)


def _round_bf16(a):
    """float64 NumPy values rounded to bfloat16 (ml_dtypes), back in float64."""
    return np.asarray(np.asarray(a, np.float32).astype(ml_dtypes.bfloat16), np.float64)


def _eqns(jaxpr):
    """Every equation of a closed jaxpr, nested ones (jit, custom_jvp, scan bodies) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in (value if isinstance(value, (tuple, list)) else (value,)):
                inner = sub if hasattr(sub, "eqns") else getattr(sub, "jaxpr", None)
                if inner is not None:
                    yield from _eqns(getattr(inner, "jaxpr", inner))


def _operand_dtypes(fn, *args, primitives):
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return [(e.primitive.name, tuple(str(v.aval.dtype) for v in e.invars))
            for e in _eqns(jaxpr) if e.primitive.name in primitives]


# --------------------------------------------------------------------------- Policy

def test_policy_holds_three_float_dtypes_and_is_a_static_value():
    assert BF16 == jl.Policy(compute=jnp.bfloat16)
    assert hash(BF16) == hash(jl.Policy(compute="bfloat16"))
    assert (BF16.params, BF16.compute, BF16.output) == (jnp.float32, jnp.bfloat16, jnp.float32)
    assert repr(BF16) == "Policy(params='float32', compute='bfloat16', output='float32')"
    assert jl.Policy() == jl.Policy("float32", "float32", "float32")


@pytest.mark.parametrize("field", ["params", "compute", "output"])
@pytest.mark.parametrize("bad", ["bf16", "int8", "half-float", None])
def test_policy_with_an_unknown_dtype_is_a_value_error_naming_it(field, bad):
    with pytest.raises(ValueError, match=rf"Policy: {field} must be a floating dtype, one "
                                         rf"of .*bfloat16.*, got {bad!r}"):
        jl.Policy(**{field: bad})


def test_mixed_precision_checks_its_arguments():
    with pytest.raises(TypeError, match="mixed_precision: policy must be a jl.Policy"):
        jl.mixed_precision(jl.Dense(2), "bfloat16")
    with pytest.raises(TypeError, match="mixed_precision: expected a jl.Layer"):
        jl.mixed_precision("dense", BF16)


# ------------------------------------------------------------------ mixed_precision

MLP = jl.serial(jl.Dense(16, activation="relu"), jl.BatchNorm(), jl.Dense(4))


def _mlp_data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 32)).astype(np.float32)


def test_params_stay_float32_and_outputs_are_the_policys_dtype():
    model = jl.mixed_precision(MLP, BF16)
    x = _mlp_data()
    params, state = model.init(KEY, x.shape)
    assert set(jax.tree.leaves(_dtypes((params, state)))) == {jnp.dtype(jnp.float32)}
    for training in (False, True):
        y, new_state = model.apply(params, state, x, training=training)
        assert y.dtype == jnp.float32
        # BatchNorm's running statistics: not cast, and carried in their own dtype
        assert _dtypes(new_state) == _dtypes(state)
    grads = jax.grad(lambda p: model.apply(p, state, x, training=True)[0].sum())(params)
    assert _dtypes(grads) == _dtypes(params)
    out = jl.mixed_precision(MLP, jl.Policy(compute="bfloat16", output="bfloat16"))
    assert out.apply(params, state, x)[0].dtype == jnp.bfloat16
    stored = jl.mixed_precision(MLP, jl.Policy(params="bfloat16"))
    assert set(jax.tree.leaves(_dtypes(stored.init(KEY, x.shape)[0]))) == {
        jnp.dtype(jnp.bfloat16)}


def test_the_convolutions_and_matmuls_of_lenet_run_in_bfloat16_forward_and_backward():
    model = jl.mixed_precision(jl.models.lenet5(10), BF16)
    x = np.zeros((2, 32, 32, 1), np.float32)
    params, state = jax.eval_shape(model.init, KEY, x)

    def loss(p, x):
        return XENT(model.apply(p, state, x, training=True)[0], jnp.zeros(2, jnp.int32))

    heavy = {"conv_general_dilated", "dot_general"}
    for fn in (lambda p, x: model.apply(p, state, x)[0], jax.grad(loss)):
        ops = _operand_dtypes(fn, params, x, primitives=heavy)
        assert len(ops) >= 5, ops  # 2 convs + 3 dense forward; their transposes backward
        assert all(dt == ("bfloat16", "bfloat16") for _, dt in ops), ops
    plain = _operand_dtypes(lambda p, x: jl.models.lenet5(10).apply(p, state, x)[0],
                            params, x, primitives=heavy)
    assert all(dt == ("float32", "float32") for _, dt in plain), plain


def test_a_users_own_layer_that_casts_nothing_computes_in_bfloat16_too():
    """jaxlayers' layers cast their params to the input's dtype themselves; a user's
    jl.Layer writing x @ w does not, so the policy's own cast of the params is what puts
    its matmul in bfloat16 (x @ w with a float32 w would promote back to float32)."""
    def init(key, spec):
        return {"w": jax.random.normal(key, (spec.shape[-1], 3))}, {}

    def apply(params, state, x, *, key=None, training=False):
        return x @ params["w"], state

    model = jl.mixed_precision(jl.Layer(init, apply), BF16)
    x = _mlp_data()
    params, state = model.init(KEY, x.shape)
    ops = _operand_dtypes(lambda p, x: model.apply(p, state, x)[0], params, x,
                          primitives={"dot_general"})
    assert ops == [("dot_general", ("bfloat16", "bfloat16"))], ops
    assert model.apply(params, state, x)[0].dtype == jnp.float32


def test_bfloat16_output_matches_a_bfloat16_numpy_emulation_not_float32():
    """Dense(16, relu) -> Dense(4) with each op rounded to bfloat16 in NumPy (ml_dtypes):
    the policy's output is within a few bfloat16 ulps of it (XLA may keep excess precision
    between fused ops: --xla_allow_excess_precision is on by default), and measurably away
    from the float32 model, which matches float64 to 1e-5."""
    net = jl.serial(jl.Dense(16, activation="relu"), jl.Dense(4))
    x = _mlp_data()
    params, state = net.init(KEY, x.shape)
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda a: a + 0.1 * rng.standard_normal(a.shape, np.float32), params)
    y16 = np.asarray(jl.mixed_precision(net, BF16).apply(params, state, x)[0], np.float64)
    y32 = np.asarray(net.apply(params, state, x)[0], np.float64)
    p = jax.tree.map(np.asarray, params)
    r = _round_bf16
    h = r(np.maximum(r(r(r(x) @ r(p[0]["kernel"])) + r(p[0]["bias"])), 0.0))
    want16 = r(r(h @ r(p[1]["kernel"])) + r(p[1]["bias"]))
    h64 = np.maximum(x.astype(np.float64) @ p[0]["kernel"] + p[0]["bias"], 0.0)
    want32 = h64 @ p[1]["kernel"] + p[1]["bias"]
    scale = np.max(np.abs(want32))
    np.testing.assert_allclose(y32, want32, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(y16, want16, rtol=0, atol=4 * BF16_ULP * scale)
    assert np.max(np.abs(y16 - y32)) > 1e-3 * scale  # rounding did happen


def test_bfloat16_gradients_are_float32_and_close_to_the_float32_ones():
    x = _mlp_data()
    params, state = MLP.init(KEY, x.shape)

    def grads(model):
        return jax.grad(lambda p: jnp.sum(jnp.sin(model.apply(p, state, x, training=True)[0])))(
            params)

    g16, g32 = grads(jl.mixed_precision(MLP, BF16)), grads(MLP)
    assert _dtypes(g16) == _dtypes(g32)
    for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
        scale = float(np.max(np.abs(b)))
        np.testing.assert_allclose(a, b, rtol=0, atol=0.05 * scale)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(g16),
                                                         jax.tree.leaves(g32)))


@pytest.mark.parametrize("check", ["shapes", "transforms", "keys"])
def test_a_bfloat16_policy_passes_the_battery_the_registry_cannot_run_on_it(check):
    """tests/registry.py holds a float32-compute policy (a float64 reference fits it); the
    bfloat16-compute one goes through the dtype-independent checks here."""
    model = jl.mixed_precision(jl.serial(jl.Dense(3), jl.BatchNorm(), jl.Dropout(0.3)), BF16)
    kwargs = {"random": True} if check == "keys" else {}
    getattr(testing, f"check_{check}")(model, (4, 5), KEY, **kwargs)


def test_bad_inputs_are_still_named_by_the_inner_layer():
    model = jl.mixed_precision(jl.serial(jl.Dense(3), jl.BatchNorm()), BF16)
    testing.check_bad_inputs(model, (4, 5), KEY, [
        ((4, 6), ValueError, r"Dense: input must have 5 features on the last axis"),
        (jax.ShapeDtypeStruct((4, 5), jnp.int32), TypeError,
         r"Dense: input must have a floating dtype")])


def test_keyword_inputs_are_cast_and_integer_inputs_pass_unchanged():
    lstm = jl.mixed_precision(jl.LSTM(4, return_sequences=True), BF16)
    x = np.ones((2, 3, 5), np.float32)
    params, state = lstm.init(KEY, x.shape)
    h0 = (jnp.full((2, 4), 0.5), jnp.zeros((2, 4)))
    y, _ = lstm.apply(params, state, x, initial_state=h0)
    assert y.dtype == jnp.float32
    with pytest.raises(TypeError, match="LSTM: unknown keyword input 'initial'"):
        lstm.apply(params, state, x, initial=h0)
    ids = np.array([[1, 2, 0], [3, 0, 0]], np.int32)
    text = jl.mixed_precision(jl.serial(jl.Embedding(5, 4), jl.GlobalAvgPool1D(),
                                        jl.Dense(2)), BF16)
    params, state = text.init(KEY, jax.ShapeDtypeStruct(ids.shape, jnp.int32))
    assert text.apply(params, state, ids)[0].dtype == jnp.float32


# -------------------------------------------------- float32 statistics in bf16 compute

def _near_constant(shape, offset=64.0, seed=0):
    """bfloat16 values offset + U(-1, 1): at 64 bfloat16's spacing is 0.5, so a mean or a
    centring computed in bfloat16 is off by a large part of the spread."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(offset + rng.uniform(-1, 1, shape), jnp.bfloat16)


def _assert_one_rounding_from(y, want):
    """y (bfloat16) is the float64 `want` rounded once: within one bfloat16 ulp."""
    y = np.asarray(y, np.float64)
    err = np.abs(y - want) / np.maximum(np.abs(want), 1e-2)
    assert float(np.max(err)) <= BF16_ULP, float(np.max(err))


def test_layernorm_takes_float32_statistics_of_bfloat16_input():
    x = _near_constant((4, 256))
    norm = jl.LayerNorm()
    params, state = norm.init(KEY, x)
    y, _ = norm.apply(params, state, x)
    assert y.dtype == jnp.bfloat16
    x64 = np.asarray(x, np.float64)
    mean, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    _assert_one_rounding_from(y, (x64 - mean) / np.sqrt(var + 1e-3))


def test_batchnorm_takes_float32_statistics_of_bfloat16_input():
    x = _near_constant((256, 4))
    norm = jl.BatchNorm()
    params, state = norm.init(KEY, x)
    y, new_state = norm.apply(params, state, x, training=True)
    assert y.dtype == jnp.bfloat16 and _dtypes(new_state) == _dtypes(state)
    x64 = np.asarray(x, np.float64)
    mean, var = x64.mean(0), x64.var(0)
    _assert_one_rounding_from(y, (x64 - mean) / np.sqrt(var + 1e-3))
    np.testing.assert_allclose(new_state["mean"], 0.01 * mean, rtol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
def test_attention_softmax_takes_float32_statistics_of_bfloat16_scores(masked):
    scores = _near_constant((3, 2000), offset=0.0, seed=1)
    mask = np.arange(2000)[None, :] % 3 != 0 if masked else None
    w = jl.attention.softmax(scores, None if mask is None else jnp.asarray(mask))
    assert w.dtype == jnp.bfloat16
    s = np.asarray(scores, np.float64)
    e = np.exp(s - s.max(-1, keepdims=True)) * (1.0 if mask is None else mask)
    _assert_one_rounding_from(w, e / e.sum(-1, keepdims=True))


@pytest.mark.parametrize("name", ["LayerNorm", "BatchNorm", "softmax", "mha-softmax",
                                  "mha-fused", "GlobalAvgPool1D"])
def test_every_reduction_of_a_norm_or_softmax_on_bfloat16_is_in_float32(name):
    x = jnp.ones((2, 5, 8), jnp.bfloat16)
    layers = {"LayerNorm": jl.LayerNorm(), "BatchNorm": jl.BatchNorm(),
              "GlobalAvgPool1D": jl.GlobalAvgPool1D(),
              "mha-softmax": jl.MultiHeadAttention(2, 4, implementation="softmax"),
              "mha-fused": jl.MultiHeadAttention(2, 4, implementation="fused")}
    if name == "softmax":
        def fn(x):
            return jl.attention.softmax(x, x > 1)
    else:
        layer = layers[name]
        params, state = jl.mixed_precision(layer, BF16).init(KEY, x)
        params = BF16.cast_to_compute(params)

        def fn(x):
            return layer.apply(params, state, x, training=True)[0]
    ops = _operand_dtypes(fn, x, primitives={"reduce_sum", "reduce_max", "reduce_min",
                                             "argmax", "cumsum"})
    assert ops and all(dt == ("float32",) for _, dt in ops), ops


# ------------------------------------------------------------------ DynamicLossScale

@pytest.mark.parametrize("kwargs, match", [
    (dict(loss_scale=0.0), "loss_scale must be a finite number > 0, got 0.0"),
    (dict(loss_scale=float("inf")), "loss_scale must be a finite number > 0"),
    (dict(period=0), "period must be a positive int"),
    (dict(factor=1.0), "factor must be a finite number > 1, got 1.0"),
    (dict(min_loss_scale=-1.0), "min_loss_scale must be a finite number > 0"),
])
def test_dynamic_loss_scale_checks_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"DynamicLossScale: {match}"):
        jl.DynamicLossScale(**kwargs)


def _reference_adjust(scale, count, finite, period, factor, floor):
    """The rule, in plain Python (jmp's and Keras's)."""
    if not finite:
        return max(scale / factor, floor), 0
    count += 1
    if count == period:
        return scale * factor, 0
    return scale, count


def test_adjust_grows_after_period_finite_steps_and_shrinks_on_overflow_under_jit_and_scan():
    rng = np.random.default_rng(0)
    flags = rng.random(200) < 0.8
    ls = jl.DynamicLossScale(4.0, period=3, factor=2.0, min_loss_scale=0.5)
    adjust = jax.jit(lambda s, f: s.adjust(f))
    scale, count, got = 4.0, 0, ls
    for f in flags:
        scale, count = _reference_adjust(scale, count, bool(f), 3, 2.0, 0.5)
        got = adjust(got, jnp.asarray(f))
        assert (float(got.loss_scale), int(got.counter)) == (scale, count)
    assert got.config == (3, 2.0, 0.5)
    scanned, _ = jax.lax.scan(lambda s, f: (s.adjust(f), None), ls, jnp.asarray(flags))
    assert (float(scanned.loss_scale), int(scanned.counter)) == (scale, count)
    floor = jl.DynamicLossScale(1.0, min_loss_scale=1.0).adjust(jnp.array(False))
    assert float(floor.loss_scale) == 1.0
    top = jl.DynamicLossScale(2.0 ** 127, period=1).adjust(jnp.array(True))
    assert float(top.loss_scale) == 2.0 ** 127  # growing would overflow float32: kept
    with pytest.raises(ValueError, match="adjust: grads_finite must be a bool scalar"):
        ls.adjust(jnp.array([True, False]))


def test_scale_and_unscale_keep_dtypes_and_invert_exactly():
    ls = jl.DynamicLossScale(2.0 ** 15)
    assert ls.scale(jnp.float16(3.0)).dtype == jnp.float32  # 3 * 2**15 > float16's max
    g = {"w": jnp.asarray([1.5, -2e-3], jnp.float32), "h": jnp.asarray([0.25], jnp.float16)}
    scaled = {"w": g["w"] * jnp.float32(2.0 ** 15), "h": g["h"] * jnp.float16(2.0 ** 15)}
    back = ls.unscale(scaled)
    assert _dtypes(back) == _dtypes(g)
    chex.assert_trees_all_equal(back, g)
    assert jl.precision.all_finite(g)
    assert not jl.precision.all_finite({**g, "w": jnp.asarray([jnp.inf])})


def test_a_loss_scale_is_a_keyed_pytree_that_checkpoints():
    ls = jl.DynamicLossScale(8.0, period=5).adjust(jnp.array(True))
    ts = jl.TrainState({"w": jnp.ones(2)}, {}, ((), ls), KEY)
    assert "opt_state/1/loss_scale" in jl.path_strings(ts)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ckpt.safetensors")
        jl.save(path, ts)
        back = jl.restore(path, like=ts).opt_state[1]
    assert (float(back.loss_scale), int(back.counter), back.config) == (8.0, 1, ls.config)
    with pytest.raises(Exception, match="immutable"):
        ls.counter = 3


# ------------------------------------------------------- make_train_step(loss_scale=)

def _f16_model():
    return jl.mixed_precision(jl.serial(jl.Dense(16, activation="tanh"), jl.Dense(3)), F16)


def _xy(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0).astype(np.int32)


def _hand_scaled_step(model, state, opt):
    """The loss-scaled step written out with optax: scaled_grads(p, x, y, s) -> (loss,
    unscaled gradients) of s * loss; update(p, o, g) -> Adam's new (params, opt state)."""
    @jax.jit
    def scaled_grads(p, xb, yb, s):
        def scaled_loss(p):
            return s * XENT(model.apply(p, state, xb, training=True)[0], yb)
        value, g = jax.value_and_grad(scaled_loss)(p)
        return value / s, jax.tree.map(lambda a: a / s, g)

    @jax.jit
    def update(p, o, g):
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), o

    return scaled_grads, update


def test_the_loss_scaled_step_equals_a_hand_written_float16_loop():
    """Scale 2**20 with float16 compute: the first steps overflow (skipped, halved), then
    finite steps grow the scale every 3 and overflow again: both branches, many times."""
    model, opt = _f16_model(), optax.adam(1e-2)
    x, y = _xy()
    params, state = model.init(KEY, x.shape)
    ls = jl.DynamicLossScale(2.0 ** 20, period=3)
    step = jl.train.make_train_step(model, XENT, opt, loss_scale=ls)

    # the hand-written loop: plain Python control flow on concrete values
    scaled_grads, update = _hand_scaled_step(model, state, opt)
    hand_p, hand_o, scale, count = params, opt.init(params), 2.0 ** 20, 0
    p, o = params, (opt.init(params), ls)
    skipped = grown = 0
    for _ in range(40):
        value, g = scaled_grads(hand_p, x, y, jnp.float32(scale))
        finite = all(bool(np.isfinite(np.asarray(a)).all()) for a in jax.tree.leaves(g))
        if finite:
            hand_p, hand_o = update(hand_p, hand_o, g)
        skipped += not finite
        new_scale, count = _reference_adjust(scale, count, finite, 3, 2.0, 1.0)
        grown += new_scale > scale
        p, _, o, loss = step(p, state, o, x, y, None)
        scale = new_scale
        # two programs that fuse the float32 update differently: rounding only
        chex.assert_trees_all_close(p, hand_p, rtol=1e-5, atol=1e-7)
        chex.assert_trees_all_close(o[0], hand_o, rtol=1e-5, atol=1e-8)
        assert (float(o[1].loss_scale), int(o[1].counter)) == (scale, count)
        if finite:
            np.testing.assert_allclose(loss, value, rtol=1e-6)
    assert skipped >= 3 and grown >= 3, (skipped, grown)
    assert set(jax.tree.leaves(_dtypes((p, o[0])))) <= {jnp.dtype(jnp.float32),
                                                        jnp.dtype(jnp.int32)}


def test_a_non_finite_step_leaves_params_state_and_opt_state_unchanged():
    model = jl.mixed_precision(jl.serial(jl.Dense(8), jl.BatchNorm(), jl.Dense(3)), F16)
    opt = optax.adam(1e-2)
    x, y = _xy()
    params, state = model.init(KEY, x.shape)
    step = jl.train.make_train_step(model, XENT, opt, loss_scale=jl.DynamicLossScale(2.0 ** 60))
    opt_state = (opt.init(params), jl.DynamicLossScale(2.0 ** 60))
    p, s, o, _ = step(params, state, opt_state, x, y, None)   # 2**60 overflows float16
    for new, old in ((p, params), (s, state), (o[0], opt_state[0])):
        chex.assert_trees_all_equal(new, old)
    assert (float(o[1].loss_scale), int(o[1].counter)) == (2.0 ** 59, 0)
    # a NaN in the data skips the step the same way, in float32 too
    plain = jl.serial(jl.Dense(8), jl.BatchNorm(), jl.Dense(3))
    step32 = jl.train.make_train_step(plain, XENT, opt, loss_scale=jl.DynamicLossScale(4.0))
    bad = x.copy()
    bad[0, 0] = np.nan
    p, s, o, _ = step32(params, state, (opt.init(params), jl.DynamicLossScale(4.0)), bad, y,
                        None)
    chex.assert_trees_all_equal((p, s, o[0]), (params, state, opt.init(params)))
    assert float(o[1].loss_scale) == 2.0


def test_loss_scaling_a_float32_step_changes_nothing_while_finite():
    """A power-of-two scale multiplies every cotangent exactly, so the scaled step's params
    follow the plain step's (to rounding in XLA's fusion order)."""
    model, opt = jl.serial(jl.Dense(16, activation="tanh"), jl.Dense(3)), optax.adam(1e-2)
    x, y = _xy()
    params, state = model.init(KEY, x.shape)
    plain = jl.train.make_train_step(model, XENT, opt)
    ls = jl.DynamicLossScale(2.0 ** 10, period=4)
    scaled = jl.train.make_train_step(model, XENT, opt, loss_scale=ls)
    p1, o1, p2, o2 = params, opt.init(params), params, (opt.init(params), ls)
    for _ in range(10):
        p1, _, o1, l1 = plain(p1, state, o1, x, y, None)
        p2, _, o2, l2 = scaled(p2, state, o2, x, y, None)
        np.testing.assert_allclose(l2, l1, rtol=1e-6)
    chex.assert_trees_all_close(p2, p1, rtol=1e-6, atol=1e-7)
    assert float(o2[1].loss_scale) == 2.0 ** 12  # grew twice in 10 finite steps


def test_make_train_step_checks_the_loss_scale_and_the_carried_pair():
    model, opt = jl.Dense(3), optax.sgd(0.1)
    x, y = _xy()
    params, state = model.init(KEY, x.shape)
    with pytest.raises(TypeError, match="make_train_step: loss_scale must be a "
                                        "jl.DynamicLossScale or None, got 1024.0"):
        jl.train.make_train_step(model, XENT, opt, loss_scale=1024.0)
    step = jl.train.make_train_step(model, XENT, opt, loss_scale=jl.DynamicLossScale())
    with pytest.raises(TypeError, match=r"make_train_step: with loss_scale=, opt_state must "
                                        r"be the pair \(optimizer_state, jl.DynamicLossScale\)"):
        step(params, state, opt.init(params), x, y, None)
    with pytest.raises(ValueError, match="make_train_step: the carried loss scale has"):
        step(params, state, (opt.init(params), jl.DynamicLossScale(period=10)), x, y, None)


# --------------------------------------------------------------- fit(loss_scale=)

def _fit_reference(model, params, state, x, y, opt, key, *, epochs, batch_size, scale,
                   period):
    """fit's documented order (PCG64 seeded with the key's words and the epoch, the
    remainder dropped) and the loss-scaling rule written out with optax and plain Python:
    scale the loss, unscale the gradients, skip a non-finite step, grow or shrink."""
    scaled_grads, update = _hand_scaled_step(model, state, opt)
    seed = [int(w) for w in np.ravel(jax.random.key_data(key))]
    o, count, trace, means = opt.init(params), 0, [], []
    for e in range(epochs):
        order, total = np.random.default_rng(seed + [e]).permutation(len(x)), 0.0
        for i in range(len(x) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            value, g = scaled_grads(params, x[idx], y[idx], jnp.float32(scale))
            finite = all(bool(np.isfinite(np.asarray(a)).all()) for a in jax.tree.leaves(g))
            if finite:
                params, o = update(params, o, g)
            scale, count = _reference_adjust(scale, count, finite, period, 2.0, 1.0)
            trace.append((finite, scale))
            total += float(value)
        means.append(total / (len(x) // batch_size))
    return params, o, scale, count, trace, means


def test_fit_with_a_dynamic_loss_scale_equals_the_hand_written_rule():
    """float16 compute, scale 2**19: the first steps overflow and are skipped, then the
    scale grows every 2 finite steps until it overflows again."""
    model, opt = _f16_model(), optax.adam(1e-2)
    x, y = _xy(56, seed=1)  # batches of 16: 3 a epoch, 8 samples dropped
    params, state = model.init(KEY, (16, 6))
    ls = jl.DynamicLossScale(2.0 ** 19, period=2)
    ts, history = jl.fit(model, (params, state), (x, y), loss=XENT, optimizer=opt, epochs=4,
                         batch_size=16, key=jax.random.key(5), loss_scale=ls, verbose=False)
    want_p, want_o, scale, count, trace, means = _fit_reference(
        model, params, state, x, y, opt, jax.random.key(5), epochs=4, batch_size=16,
        scale=2.0 ** 19, period=2)
    skipped = sum(not f for f, _ in trace)
    grown = sum(b > a for (_, a), (_, b) in zip(trace, trace[1:]))
    assert skipped >= 2 and grown >= 2 and trace[0][0] is False, trace
    assert ts.step == 12
    chex.assert_trees_all_close(ts.params, want_p, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(ts.opt_state[0], want_o, rtol=1e-5, atol=1e-8)
    assert (float(ts.opt_state[1].loss_scale), int(ts.opt_state[1].counter)) == (scale, count)
    np.testing.assert_allclose(history["loss"], means, rtol=1e-5)


def test_fit_resumes_the_loss_scale_from_a_checkpoint_bit_for_bit():
    model, opt = _f16_model(), optax.adam(1e-2)
    x, y = _xy(56, seed=1)
    params, state = model.init(KEY, (16, 6))
    kw = dict(loss=XENT, optimizer=opt, batch_size=16, key=jax.random.key(5),
              loss_scale=jl.DynamicLossScale(2.0 ** 19, period=2), verbose=False)
    whole, _ = jl.fit(model, (params, state), (x, y), epochs=4, **kw)
    with tempfile.TemporaryDirectory() as d:
        half, _ = jl.fit(model, (params, state), (x, y), epochs=1, checkpoint_dir=d, **kw)
        # after 3 steps (2 skipped, 1 finite) the scale is neither the initial one nor the
        # final one, and its counter of finite steps is running
        assert float(half.opt_state[1].loss_scale) not in (2.0 ** 19,
                                                           float(whole.opt_state[1].loss_scale))
        assert int(half.opt_state[1].counter) == 1
        resumed, _ = jl.fit(model, (params, state), (x, y), epochs=4, checkpoint_dir=d,
                            resume=True, **kw)
    continued, _ = jl.fit(model, half, (x, y), epochs=3,
                          **{**kw, "key": None})  # the TrainState carries its key
    assert resumed.step == continued.step == whole.step == 12
    for run in (resumed, continued):
        chex.assert_trees_all_equal((run.params, run.opt_state), (whole.params,
                                                                  whole.opt_state))


def test_fit_checks_the_loss_scale_against_the_train_state():
    model, opt = jl.Dense(3), optax.sgd(0.1)
    x, y = _xy(16)
    params, state = model.init(KEY, x.shape)
    kw = dict(loss=XENT, optimizer=opt, epochs=1, batch_size=16, verbose=False)
    ts = jl.TrainState.create(params, state, opt, KEY)
    with pytest.raises(TypeError, match="fit: loss_scale must be a jl.DynamicLossScale or "
                                        "None, got 1024.0"):
        jl.fit(model, (params, state), (x, y), key=KEY, loss_scale=1024.0, **kw)
    with pytest.raises(TypeError, match=r"fit: with loss_scale=, a TrainState's opt_state must "
                                        r"be the pair \(optimizer_state, jl.DynamicLossScale\)"):
        jl.fit(model, ts, (x, y), loss_scale=jl.DynamicLossScale(), **kw)
    scaled = ts.replace(opt_state=(ts.opt_state, jl.DynamicLossScale(period=10)))
    with pytest.raises(ValueError, match=r"fit: the TrainState's loss scale has \(period, "
                                         r"factor, min_loss_scale\) \(10, 2.0, 1.0\), but "
                                         r"loss_scale= has \(2000, 2.0, 1.0\)"):
        jl.fit(model, scaled, (x, y), loss_scale=jl.DynamicLossScale(), **kw)
    with pytest.raises(ValueError, match="fit: the TrainState's opt_state carries a "
                                         "jl.DynamicLossScale"):
        jl.fit(model, scaled, (x, y), **kw)


# -------------------------------------------------- bf16 training on the digits vs f32

def _train_and_score(model, data, *, epochs, batch_size, learning_rate):
    (x_tr, y_tr), (x_te, y_te) = data
    params, state = model.init(jax.random.key(0), (batch_size,) + x_tr.shape[1:])
    schedule = optax.cosine_decay_schedule(learning_rate, epochs * (len(x_tr) // batch_size))
    ts, _ = jl.fit(model, (params, state), (x_tr, y_tr), loss=XENT,
                   optimizer=optax.adam(schedule), epochs=epochs, batch_size=batch_size,
                   key=jax.random.key(1), progress=False, verbose=False)
    assert set(jax.tree.leaves(_dtypes(ts.params))) == {jnp.dtype(jnp.float32)}
    return jl.evaluate(model, ts.params, ts.state, (x_te, y_te), loss=XENT)["accuracy"]


@pytest.mark.slow
def test_bfloat16_lenet5_reaches_its_float32_accuracy_on_the_digits():
    """LeNet-5 on the 32x32 digits (jaxlayers/demos/digits_cnn.py, without the shifted
    copies), 8 epochs of Adam: float32 and bfloat16 compute within 1 point of accuracy on
    the 360 held-out images (~96%; ~10-16 s per run on one core)."""
    pytest.importorskip("sklearn")
    from jaxlayers.demos.digits_cnn import load

    data = load(0)
    acc = {name: _train_and_score(jl.mixed_precision(jl.models.lenet5(10), policy), data,
                                  epochs=8, batch_size=64, learning_rate=3e-3)
           for name, policy in (("float32", jl.Policy()), ("bfloat16", BF16))}
    assert acc["float32"] > 0.94, acc
    assert abs(acc["bfloat16"] - acc["float32"]) <= 0.01, acc


@pytest.mark.slow
def test_bfloat16_transformer_encoder_reaches_its_float32_accuracy_on_the_digits():
    """Each 8x8 digit as 8 rows of 8 pixels: Dense(32) + learned positions -> 2 pre-LN
    encoder blocks (4 heads, FFN 64) -> mean over rows -> Dense(10); 20 epochs of Adam,
    batch 32 (~12-14 s per run on one core): within 1 point (~96%)."""
    pytest.importorskip("sklearn")
    from jaxlayers.demos.digits import load

    (x_tr, y_tr), (x_te, y_te) = load(0)
    data = ((x_tr.reshape(-1, 8, 8), y_tr), (x_te.reshape(-1, 8, 8), y_te))

    def encoder():
        return jl.serial(jl.Dense(32), jl.PositionEmbedding(8),
                         jl.TransformerEncoder(2, 4, 64, norm_first=True),
                         jl.GlobalAvgPool1D(), jl.Dense(10))

    acc = {name: _train_and_score(jl.mixed_precision(encoder(), policy), data, epochs=20,
                                  batch_size=32, learning_rate=3e-3)
           for name, policy in (("float32", jl.Policy()), ("bfloat16", BF16))}
    assert acc["float32"] > 0.94, acc
    assert abs(acc["bfloat16"] - acc["float32"]) <= 0.01, acc


# ------------------------------------------------------------ remat (issue 12, item 4)

def test_transformer_encoder_remat_checkpoints_the_scanned_block_and_changes_no_number():
    """scan=True, remat=True puts the scanned block under jax.checkpoint: same params,
    outputs and gradients, and XLA keeps fewer bytes of temporaries for the backward pass."""
    x = np.random.default_rng(0).standard_normal((4, 16, 16)).astype(np.float32)
    plain, remat = (jl.TransformerEncoder(4, 2, 32, scan=True, remat=r) for r in (False, True))
    params, state = plain.init(KEY, x.shape)
    chex.assert_trees_all_equal_shapes_and_dtypes(params, remat.init(KEY, x.shape)[0])

    def loss(model):
        def f(p):
            return jnp.sum(jnp.sin(model.apply(p, state, x, training=True)[0]))
        return f

    (v0, g0), (v1, g1) = (jax.value_and_grad(loss(m))(params) for m in (plain, remat))
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    # the recomputed forward pass may sum in another order: float32 rounding
    chex.assert_trees_all_close(g1, g0, rtol=1e-5, atol=1e-5)
    names = [e.primitive.name for e in _eqns(jax.make_jaxpr(loss(remat))(params).jaxpr)]
    assert any(n.startswith("remat") or n == "checkpoint" for n in names), sorted(set(names))
    temp = [jax.jit(jax.grad(loss(m))).lower(params).compile().memory_analysis()
            .temp_size_in_bytes for m in (plain, remat)]
    assert temp[1] < temp[0], temp


@pytest.mark.parametrize("stack", [jl.TransformerEncoder, jl.TransformerDecoder])
def test_remat_without_scan_is_refused_not_ignored(stack):
    with pytest.raises(ValueError, match=f"{stack.__name__}: remat=True needs scan=True"):
        stack(2, 2, 8, remat=True)
