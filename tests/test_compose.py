"""jl.compose: free-form wiring over named children, against the same wiring written by hand."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl

KEY = jax.random.key(0)
V, N, T = 11, 3, 5
IDS = jax.ShapeDtypeStruct((N, T), jnp.int32)


def _char_model():
    def forward(m, ids, *, carry=None):
        y, h, c = m.lstm(m.embed(ids), initial_state=carry)
        return m.head(y), (h, c)

    return jl.compose(forward, embed=jl.Embedding(V, 4),
                      lstm=jl.LSTM(6, return_sequences=True, return_state=True),
                      head=jl.Dense(V))


def _ids(seed, shape=(N, T)):
    return jax.random.randint(jax.random.key(seed), shape, 0, V)


def test_issue_example_matches_the_children_called_by_hand():
    model = _char_model()
    params, state = model.init(KEY, IDS)
    assert set(params) == set(state) == {"embed", "lstm", "head"}
    assert params["lstm"]["kernel"].shape == (4, 24) and params["head"]["kernel"].shape == (6, V)
    ids = _ids(1)
    (logits, (h, c)), new_state = model.apply(params, state, ids, key=KEY, training=True)

    # the reference: NumPy's table lookup, then the children's own applies, in order
    e = np.asarray(params["embed"]["embeddings"])[np.asarray(ids)]
    lstm = jl.LSTM(6, return_sequences=True, return_state=True)
    (y, h_ref, c_ref), _ = lstm.apply(params["lstm"], {}, jnp.asarray(e))
    want = np.asarray(y) @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])
    chex.assert_trees_all_close((logits, h, c), (want, h_ref, c_ref), rtol=1e-5, atol=1e-6)
    assert new_state == {"embed": {}, "lstm": {}, "head": {}}


def test_keyword_inputs_reach_forward_and_the_carry_continues_the_sequence():
    model = _char_model()
    params, state = model.init(KEY, IDS)
    ids = _ids(2, (N, 2 * T))
    apply = jax.jit(model.apply)
    (first, carry), _ = apply(params, state, ids[:, :T])
    (second, _), _ = apply(params, state, ids[:, T:], carry=carry)
    (whole, _), _ = model.apply(params, state, ids)  # one pass over both chunks
    chex.assert_trees_all_close(jnp.concatenate([first, second], 1), whole, rtol=1e-5,
                                atol=1e-6)
    (fresh, _), _ = apply(params, state, ids[:, T:])  # no carry: zeros, another output
    assert not np.allclose(fresh, second, atol=1e-4)


def test_init_is_traceable_and_summary_expands_the_children():
    model = _char_model()
    abstract = jax.eval_shape(model.init, KEY, IDS)
    concrete = model.init(KEY, IDS)
    chex.assert_trees_all_equal_shapes_and_dtypes(abstract, concrete)
    assert jl.output_shape(model, IDS) == ((N, T, V), ((N, 6), (N, 6)))
    rows = jl.summary(model, IDS, print_fn=None).rows
    assert [(r.path, r.type, r.output_shape) for r in rows] == [
        ("embed", "Embedding", (N, T, 4)), ("lstm", "LSTM", ((N, T, 6), (N, 6), (N, 6))),
        ("head", "Dense", (N, T, V))]
    assert [r.params for r in rows] == [V * 4, 4 * 6 * (4 + 6 + 1), 6 * V + V]


def test_a_child_called_twice_shares_its_params():
    model = jl.compose(lambda m, x: m.dense(jnp.tanh(m.dense(x))), dense=jl.Dense(3))
    params, state = model.init(KEY, (2, 3))
    assert list(params) == ["dense"]
    x = jax.random.normal(jax.random.key(3), (2, 3))

    def by_hand(p, x):
        w, b = p["kernel"], p["bias"]
        return jnp.tanh(x @ w + b[None, :]) @ w + b[None, :]

    y, _ = model.apply(params, state, x)
    chex.assert_trees_all_close(y, by_hand(params["dense"], x), rtol=1e-6)
    # the shared weight's gradient sums both uses
    g = jax.grad(lambda p: jnp.sum(model.apply(p, state, x)[0] ** 2))(params)
    g_ref = jax.grad(lambda p: jnp.sum(by_hand(p, x) ** 2))(params["dense"])
    chex.assert_trees_all_close(g["dense"], g_ref, rtol=1e-5)
    rows = jl.summary(model, (2, 3), print_fn=None).rows
    assert [(r.path, r.params) for r in rows] == [("dense", 12), ("dense#2", 0)]


def test_keys_come_from_child_names_and_each_call_gets_its_own():
    drop = jl.Dropout(0.3)
    model = jl.compose(lambda m, x: (m.drop(x), m.drop(x)), drop=drop)
    params, state = model.init(KEY, (4, 50))
    x = jnp.ones((4, 50))
    (a, b), _ = model.apply(params, state, x, key=KEY, training=True)
    # the first call's key is the one serial gives a child of that name
    ref, _ = jl.serial(drop=drop).apply({"drop": {}}, {"drop": {}}, x, key=KEY, training=True)
    np.testing.assert_array_equal(a, ref)
    assert not np.array_equal(a, b)  # the second call draws another mask
    np.testing.assert_array_equal(
        b, drop.apply({}, {}, x, key=jax.random.fold_in(jl.core.child_key(KEY, "drop"), 1),
                      training=True)[0])


def test_state_threads_through_calls_and_the_last_call_wins():
    bn = jl.BatchNorm(momentum=0.8)
    model = jl.compose(lambda m, x: m.bn(m.bn(x) * 2.0), bn=bn)
    params, state = model.init(KEY, (6, 3))
    x = jax.random.normal(jax.random.key(4), (6, 3)) + 1.5
    _, new_state = model.apply(params, state, x, training=True)
    h, s1 = bn.apply(params["bn"], state["bn"], x, training=True)
    _, s2 = bn.apply(params["bn"], s1, h * 2.0, training=True)
    chex.assert_trees_all_close(new_state["bn"], s2, rtol=1e-6)


def test_forward_sees_training_and_draws_its_own_keys():
    def forward(m, x):
        if m.training:
            x = x + 0.1 * jax.random.normal(m.make_key("noise"), x.shape)
        return m.dense(x)

    model = jl.compose(forward, dense=jl.Dense(2))
    params, state = model.init(KEY, (2, 3))
    x = jnp.ones((2, 3))
    clean, _ = model.apply(params, state, x)
    noisy, _ = model.apply(params, state, x, key=KEY, training=True)
    again, _ = model.apply(params, state, x, key=KEY, training=True)
    other, _ = model.apply(params, state, x, key=jax.random.key(9), training=True)
    np.testing.assert_array_equal(noisy, again)
    assert not np.allclose(noisy, clean) and not np.allclose(noisy, other)
    with pytest.raises(ValueError, match=r"compose: m\.make_key\('noise'\) needs a PRNG key"):
        model.apply(params, state, x, training=True)


def test_compose_nests_in_serial_and_routes_keywords():
    inner = _char_model()
    outer = jl.serial(model=inner)
    params, state = outer.init(KEY, IDS)
    ids = _ids(5)
    (_, carry), _ = inner.apply(params["model"], state["model"], ids)
    (y, _), _ = outer.apply(params, state, ids, model={"carry": carry})
    (want, _), _ = inner.apply(params["model"], state["model"], ids, carry=carry)
    chex.assert_trees_all_close(y, want)
    rows = jl.summary(outer, IDS, print_fn=None).rows
    assert [r.path for r in rows] == ["model/embed", "model/lstm", "model/head"]


def test_the_conformance_battery_passes_on_a_compose_model():
    def forward(m, x, *, scale=1.0):
        h = m.norm(m.dense(x))
        return m.out(m.drop(h) * scale) + m.dense(x)  # the dense layer reused

    model = jl.compose(forward, dense=jl.Dense(4), norm=jl.LayerNorm(),
                       drop=jl.Dropout(0.3), out=jl.Dense(4))
    jl.testing.check_layer(model, (3, 4), KEY, random=True)


# ------------------------------------------------------------------------ bad input

def test_bad_construction():
    with pytest.raises(TypeError, match="compose: forward must be a function"):
        jl.compose(3, a=jl.Dense(2))
    with pytest.raises(ValueError, match="compose: needs at least one child"):
        jl.compose(lambda m, x: x)
    with pytest.raises(ValueError, match=r"compose: child names \['make_key', 'training'\] "
                                         r"are reserved"):
        jl.compose(lambda m, x: x, training=jl.Dense(2), make_key=jl.Dense(2))
    with pytest.raises(TypeError, match="compose: expected a jl.Layer"):
        jl.compose(lambda m, x: x, a="dense")


def test_bad_wiring_is_named_at_init():
    with pytest.raises(ValueError, match=r"compose: children \['unused'\] are never called"):
        jl.compose(lambda m, x: m.dense(x), dense=jl.Dense(2), unused=jl.Dense(2)).init(
            KEY, (2, 3))
    shared = jl.compose(lambda m, x: m.dense(m.dense(x)), dense=jl.Dense(4))
    with pytest.raises(ValueError, match=r"compose: child 'dense' \(Dense\) is called with "
                                         r"input float32\(2, 4\), but its params were made "
                                         r"for its first call's input float32\(2, 3\)"):
        shared.init(KEY, (2, 3))
    with pytest.raises(AttributeError, match=r"compose: forward asked for the child 'dense2'"):
        jl.compose(lambda m, x: m.dense2(x), dense=jl.Dense(2)).init(KEY, (2, 3))
    returns_float = jl.compose(lambda m, x: (m.dense(x), 1.5), dense=jl.Dense(2))
    with pytest.raises(TypeError, match=r"compose: <lambda>: its outputs must be arrays .* "
                                        r"got float 1\.5 at '1'"):
        returns_float.init(KEY, (2, 3))
    with pytest.raises(TypeError, match=r"compose: m\.dense\(\.\.\.\) takes no key="):
        jl.compose(lambda m, x: m.dense(x, key=None), dense=jl.Dense(2)).init(KEY, (2, 3))


def test_bad_apply_inputs_are_named():
    model = _char_model()
    params, state = model.init(KEY, IDS)
    ids = _ids(6)
    with pytest.raises(TypeError, match=r"compose: unknown keyword input 'carri'; forward "
                                        r"takes \['carry'\]"):
        model.apply(params, state, ids, carri=None)
    with pytest.raises(ValueError, match=r"compose: params must be a dict with the children's "
                                         r"keys \['embed', 'head', 'lstm'\]"):
        model.apply({"embed": params["embed"]}, state, ids)
    # a child given an input its params do not fit: the child names itself and both sizes
    wrong = jl.compose(lambda m, x: m.dense(x[:, :2]), dense=jl.Dense(2))
    p, s = jl.compose(lambda m, x: m.dense(x), dense=jl.Dense(2)).init(KEY, (2, 3))
    with pytest.raises(ValueError, match=r"Dense: input must have 3 features on the last "
                                         r"axis, got shape \(2, 2\)"):
        wrong.apply(p, s, jnp.ones((2, 3)))
    with pytest.raises(TypeError, match=r"compose: child 'dense' \(Dense\): its input must "
                                        r"be arrays"):
        jl.compose(lambda m, x: m.dense("x"), dense=jl.Dense(2)).apply(p, s, jnp.ones((2, 3)))


class ComposeWithAndWithoutJit(chex.TestCase):
    """chex.variants: the same compose model, applied eagerly and under jit, against the
    children applied by hand."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_tied_dense_matches_the_hand_written_wiring(self):
        model = jl.compose(lambda m, x: m.dense(jnp.tanh(m.dense(x))), dense=jl.Dense(3))
        params, state = model.init(KEY, (2, 3))
        x = jax.random.normal(jax.random.key(7), (2, 3))
        apply = self.variant(lambda p, s, x: model.apply(p, s, x)[0])
        w, b = (np.asarray(params["dense"][k]) for k in ("kernel", "bias"))
        want = np.tanh(np.asarray(x) @ w + b) @ w + b
        chex.assert_trees_all_close(apply(params, state, x), want, rtol=1e-5, atol=1e-6)
