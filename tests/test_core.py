"""Combinators, keys, shapes and summaries (DESIGN.md §1), against hand-composed references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl

KEY = jax.random.key(0)


def _x(shape, seed=1):
    return np.asarray(jax.random.normal(jax.random.key(seed), shape))


def _np(tree):
    return jax.tree.map(np.asarray, tree)


def test_layer_unpacks_like_a_stax_pair_and_user_layers_work():
    seen = []

    def init(key, input_spec):
        seen.append(input_spec)  # always a jax.ShapeDtypeStruct, whoever calls init
        return {"w": jnp.full((input_spec.shape[-1],), 2.0)}, {}

    def apply(params, state, x, *, key=None, training=False):
        return x * jnp.broadcast_to(params["w"], x.shape), state

    layer = jl.Layer(init, apply)
    init_fn, apply_fn = layer
    assert init_fn is layer.init and apply_fn is layer.apply
    init_fn(KEY, (3, 4))
    init_fn(KEY, jnp.ones((3, 4)))
    model = jl.serial(layer, jl.Dense(2))
    params, state = model.init(KEY, (3, 4))
    y, _ = model.apply(params, state, jnp.ones((3, 4)))
    p = _np(params[1])
    chex.assert_trees_all_close(y, 2.0 * np.ones((3, 4)) @ p["kernel"] + p["bias"], rtol=1e-6)
    assert [r.type for r in jl.summary(model, (3, 4), print_fn=None).rows] == ["Layer", "Dense"]
    assert seen and all(s == jax.ShapeDtypeStruct((3, 4), jnp.float32) for s in seen)


def test_serial_equals_manual_composition():
    d1, d2 = jl.Dense(5, activation="tanh"), jl.Dense(3)
    model = jl.serial(d1, d2)
    params, state = model.init(KEY, (4, 6))
    x, p = _x((4, 6)), _np(params)
    h = np.tanh(x @ p[0]["kernel"] + p[0]["bias"])
    chex.assert_trees_all_close(model.apply(params, state, x)[0],
                                h @ p[1]["kernel"] + p[1]["bias"], rtol=1e-5, atol=1e-6)
    assert jl.Sequential is jl.serial


def test_serial_with_keywords_names_params():
    model = jl.serial(features=jl.Dense(4), head=jl.Dense(2))
    params, state = model.init(KEY, (1, 3))
    assert set(params) == {"features", "head"}
    chex.assert_shape(params["head"]["kernel"], (4, 2))
    rows = jl.summary(model, (1, 3), print_fn=None).rows
    assert [r.path for r in rows] == ["features", "head"]
    with pytest.raises(ValueError, match="serial: give the children all by position"):
        jl.serial(jl.Dense(2), head=jl.Dense(2))


def test_child_keys_are_fold_in_and_stable_when_appending():
    drop = jl.Dropout(0.5)
    x = jnp.ones((4, 64))
    m1 = jl.serial(drop, drop)
    m2 = jl.serial(drop, drop, jl.Dense(3))
    y1 = m1.apply(*m1.init(KEY, x.shape), x, key=KEY, training=True)[0]
    m2_params, m2_state = m2.init(KEY, x.shape)
    y2 = m2.apply(m2_params, m2_state, x, key=KEY, training=True)[0]
    # the first two children see fold_in(key, 0) and fold_in(key, 1) in both models
    ref = drop.apply({}, {}, x, key=jax.random.fold_in(KEY, 0), training=True)[0]
    ref = drop.apply({}, {}, ref, key=jax.random.fold_in(KEY, 1), training=True)[0]
    chex.assert_trees_all_equal(y1, ref)
    inner = jl.serial(drop, drop).apply((({}), {}), ({}, {}), x, key=KEY, training=True)[0]
    chex.assert_trees_all_equal(inner, ref)
    chex.assert_shape(y2, (4, 3))
    # same key twice: identical; another key: different masks
    again = m1.apply(*m1.init(KEY, x.shape), x, key=KEY, training=True)[0]
    other = m1.apply(*m1.init(KEY, x.shape), x, key=jax.random.key(7), training=True)[0]
    chex.assert_trees_all_equal(y1, again)
    assert not np.array_equal(y1, other)


def test_parallel_fanout_concatenate():
    model = jl.serial(jl.fanout(2), jl.parallel(jl.Dense(3), jl.Dense(2)), jl.Concatenate())
    params, state = model.init(KEY, (5, 4))
    x = _x((5, 4))
    y, _ = model.apply(params, state, x)
    p1, p2 = _np(params[1])
    ref = np.concatenate([x @ p1["kernel"] + p1["bias"], x @ p2["kernel"] + p2["bias"]], -1)
    chex.assert_trees_all_close(y, ref, rtol=1e-5, atol=1e-6)
    assert jl.output_shape(model, (5, 4)) == (5, 5)
    with pytest.raises(ValueError, match="parallel: input must be a tuple of 2 inputs"):
        jl.parallel(jl.Dense(3), jl.Dense(2)).apply(({}, {}), ({}, {}), x)


def test_merge_layers_against_numpy():
    a, b = _x((2, 3), 1), _x((2, 3), 2)
    chex.assert_trees_all_close(jl.Add().apply({}, {}, (a, b))[0], np.add(a, b), rtol=1e-6)
    chex.assert_trees_all_close(jl.Multiply().apply({}, {}, (a, b))[0], np.multiply(a, b),
                                rtol=1e-6)
    c = _x((2, 5), 3)
    chex.assert_trees_all_equal(jl.Concatenate().apply({}, {}, (a, c))[0],
                                np.concatenate([a, c], -1))
    with pytest.raises(ValueError, match=r"Add: all inputs must have the same shape"):
        jl.Add().apply({}, {}, (a, c))
    with pytest.raises(ValueError, match=r"Concatenate: inputs must agree on every axis"):
        jl.Concatenate(axis=1).apply({}, {}, (a, _x((3, 3))))
    with pytest.raises(ValueError, match=r"Multiply: input must be a tuple of at least 2"):
        jl.Multiply().apply({}, {}, a)


def test_residual_adds_input_and_rejects_shape_change():
    model = jl.residual(jl.Dense(4))
    params, state = model.init(KEY, (3, 4))
    x = _x((3, 4))
    p = _np(params)
    chex.assert_trees_all_close(model.apply(params, state, x)[0],
                                x + x @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-6)
    bad = jl.residual(jl.Dense(5))
    p, s = bad.init(KEY, (3, 4))
    with pytest.raises(ValueError, match=r"residual: the wrapped Dense must keep the input shape"):
        bad.apply(p, s, x)


def test_repeat_equals_unrolled_loop():
    model = jl.repeat(jl.Dense(6, activation="tanh"), 3)
    params, state = model.init(KEY, (2, 6))
    chex.assert_shape(params["kernel"], (3, 6, 6))
    x = _x((2, 6))
    h = np.asarray(x, np.float64)
    for i in range(3):
        h = np.tanh(h @ np.asarray(params["kernel"][i]) + np.asarray(params["bias"][i]))
    chex.assert_trees_all_close(model.apply(params, state, x)[0], h, rtol=1e-5, atol=1e-5)
    remat = jl.repeat(jl.Dense(6, activation="tanh"), 3, remat=True)
    chex.assert_trees_all_close(remat.apply(params, state, x)[0], h, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"repeat: Dense must keep its input shape"):
        jl.repeat(jl.Dense(3), 2).init(KEY, (2, 6))


def test_input_declares_shape():
    model = jl.serial(jl.Input((8,)), jl.Dense(4))
    params, _ = model.init(KEY)
    chex.assert_shape(params[1]["kernel"], (8, 4))
    assert jl.output_shape(model) == (1, 4)
    assert jl.output_shape(model, (7, 8)) == (7, 4)
    with pytest.raises(ValueError, match=r"Input: input must have shape \(N, 8\), got \(2, 9\)"):
        model.apply(params, ({}, {}), jnp.ones((2, 9)))
    with pytest.raises(TypeError, match="Input: input must have a dtype of the kind of float32, "
                                        "got int32"):
        model.apply(params, ({}, {}), jnp.ones((2, 8), jnp.int32))
    with pytest.raises(ValueError, match="Input: shape must be a tuple of ints"):
        jl.Input(8)
    with pytest.raises(ValueError, match="Dense: an input spec is required"):
        jl.output_shape(jl.Dense(3))


def test_output_shape_allocates_nothing_and_accepts_structs():
    big = jl.serial(jl.Dense(100_000), jl.Dense(100_000))  # 10^10 params: never allocated
    assert jl.output_shape(big, (2, 100_000)) == (2, 100_000)
    assert jl.output_shape(jl.Flatten(), jax.ShapeDtypeStruct((2, 3, 4), jnp.float32)) == (2, 12)
    assert jl.output_shape(jl.Flatten(), jnp.zeros((2, 3, 4))) == (2, 12)


def test_summary_table_and_count_params():
    model = jl.serial(jl.Dense(256, activation="relu"), jl.Dense(128, activation="relu"),
                      jl.Dense(10))
    summary = jl.summary(model, (32, 784), print_fn=None)
    assert [(r.path, r.type, r.output_shape, r.params, r.state) for r in summary.rows] == [
        ("0", "Dense", (32, 256), 200_960, 0), ("1", "Dense", (32, 128), 32_896, 0),
        ("2", "Dense", (32, 10), 1_290, 0)]
    assert summary.total_params == 235_146 and summary.total_state == 0
    for count in ("200,960", "32,896", "1,290", "Total params: 235,146", "(32, 256)"):
        assert count in summary.text
    assert str(summary) == summary.text
    printed = []
    jl.summary(model, (32, 784), print_fn=printed.append)
    assert printed == [summary.text]
    params, _ = model.init(KEY, (1, 784))
    assert jl.count_params(params) == 235_146
    bn = jl.summary(jl.serial(jl.Dense(4), jl.BatchNorm()), (2, 3), print_fn=None)
    assert bn.total_state == 8 and bn.rows[1].state == 8
    assert "Non-trainable state: 8" in bn.text


def test_batch_size_does_not_change_params():
    model = jl.serial(jl.Dense(3), jl.BatchNorm(), jl.PReLU())
    p1, s1 = model.init(KEY, (1, 5))
    p2, s2 = model.init(KEY, (64, 5))
    chex.assert_trees_all_equal((p1, s1), (p2, s2))


def test_masked_passes_through_per_step_layers_and_is_refused_elsewhere():
    values = _x((2, 4, 3))
    mask = jnp.array([[True, True, False, False], [True, True, True, True]])
    m = jl.Masked(values, mask)
    dense = jl.Dense(5)
    p, s = dense.init(KEY, (2, 4, 3))
    out, _ = dense.apply(p, s, m)
    assert isinstance(out, jl.Masked)
    chex.assert_shape(out.values, (2, 4, 5))
    chex.assert_trees_all_equal(out.mask, mask)
    out, _ = jl.Dropout(0.5).apply({}, {}, m, key=KEY, training=True)
    assert isinstance(out, jl.Masked)
    with pytest.raises(TypeError, match="Flatten: does not accept a jl.Masked input"):
        jl.Flatten().apply({}, {}, m)
    with pytest.raises(TypeError, match="LayerNorm: does not accept a jl.Masked input"):
        ln = jl.LayerNorm()
        ln.apply(*ln.init(KEY, (2, 4, 3)), m)


def test_combinator_children_must_be_layers():
    with pytest.raises(TypeError, match=r"serial: expected a jl.Layer \(an \(init, apply\) "
                                        r"pair\), got str: 'relu'"):
        jl.serial(jl.Dense(2), "relu")
    with pytest.raises(ValueError, match="fanout: n must be a positive int"):
        jl.fanout(0)
    with pytest.raises(ValueError, match="fanout: give a positive int n or distinct branch "
                                         "names, got \\('a', 'a'\\)"):
        jl.fanout("a", "a")
    for where, build in (("parallel", jl.parallel), ("residual", jl.residual),
                         ("Bidirectional", jl.Bidirectional), ("compose", None)):
        with pytest.raises(TypeError, match=f"{where}: expected a jl.Layer"):
            build("relu") if build else jl.compose(lambda m, x: x, a="relu")


def test_params_or_state_of_the_wrong_structure_name_the_combinator():
    model = jl.serial(jl.Dense(2), jl.Dense(2))
    params, state = model.init(KEY, (1, 3))
    with pytest.raises(ValueError, match=r"serial: state must be a tuple of 2 entries, one per "
                                         r"child \(as init returns it\), got dict"):
        model.apply(params, {}, jnp.ones((1, 3)))
    with pytest.raises(ValueError, match=r"serial: params must be a tuple of 2 entries.*length 1"):
        model.apply(params[:1], state, jnp.ones((1, 3)))
    named = jl.serial(a=jl.Dense(2))
    with pytest.raises(ValueError, match=r"serial: params must be a dict with keys \['a'\]"):
        named.apply((), {"a": {}}, jnp.ones((1, 3)))


class RepeatWithAndWithoutJit(chex.TestCase):
    """chex.variants: jl.repeat's scan (and its remat form) applied eagerly and under jit,
    against the loop unrolled in NumPy."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_repeat_matches_the_unrolled_loop(self):
        model = jl.repeat(jl.Dense(6, activation="tanh"), 3)
        remat = jl.repeat(jl.Dense(6, activation="tanh"), 3, remat=True)
        params, state = model.init(KEY, (2, 6))
        x = _x((2, 6))
        h = np.asarray(x, np.float64)
        for i in range(3):
            h = np.tanh(h @ np.asarray(params["kernel"][i]) + np.asarray(params["bias"][i]))
        apply = self.variant(lambda p, s, x: (model.apply(p, s, x)[0], remat.apply(p, s, x)[0]))
        y, y_remat = apply(params, state, x)
        chex.assert_shape((y, y_remat), (2, 6))
        chex.assert_trees_all_close((y, y_remat), (h, h), rtol=1e-5, atol=1e-5)
