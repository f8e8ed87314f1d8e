"""The layer contract itself: the Layer type, one spec type, keyword inputs, Masked, stateful."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl

KEY = jax.random.key(0)
S = jax.ShapeDtypeStruct


# ------------------------------------------------------------------------ the Layer type

def test_layer_is_a_frozen_dataclass_with_its_fields_and_not_a_pytree():
    layer = jl.Dense(3, activation="relu")
    assert dataclasses.is_dataclass(layer)
    assert {f.name for f in dataclasses.fields(layer)} >= {"init", "apply", "name", "children"}
    assert layer.name == "Dense" and layer.children is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.name = "Other"
    init_fn, apply_fn = layer
    assert (init_fn, apply_fn) == (layer.init, layer.apply)
    # not silently a pytree: one opaque leaf, not (init, apply)
    assert jax.tree.leaves(layer) == [layer]
    model = jl.serial(a=layer, b=jl.Dense(2))
    assert model.children == {"a": layer, "b": model.children["b"]}


def test_repr_shows_the_hyperparameters_given():
    assert repr(jl.Dense(128, activation="relu")) == "Dense(features=128, activation='relu')"
    assert repr(jl.Conv2D(8, 3, strides=2)) == "Conv2D(filters=8, kernel_size=3, strides=2)"
    assert repr(jl.Dropout(0.1)) == "Dropout(rate=0.1)"
    assert repr(jl.serial(jl.Dense(2), jl.Activation("tanh"))) == \
        "Serial(Dense(features=2), Activation(activation='tanh'))"
    assert repr(jl.serial(head=jl.Dense(2))) == "Serial(head=Dense(features=2))"
    assert repr(jl.Bidirectional(jl.LSTM(4), "sum")) == \
        "Bidirectional(layer=LSTM(units=4), merge_mode='sum')"
    assert repr(jl.fanout("main", "skip")) == "FanOut('main', 'skip')"
    assert repr(jl.Layer(lambda k, s: ({}, {}), lambda p, s, x, **kw: (x, s))) == "Layer()"


def test_every_layer_init_receives_structs_whoever_calls_it():
    seen = []

    def init(key, spec):
        seen.append(spec)
        return {}, {}

    def apply(params, state, x, *, key=None, training=False):
        return x, state

    mine = jl.Layer(init, apply, name="Mine")
    mine.init(KEY, (2, 3))                                   # a shape
    mine.init(KEY, np.zeros((2, 3), np.float32))             # an array
    mine.init(KEY, S((2, 3), jnp.float32))                   # a struct
    jl.serial(jl.Dense(3), mine).init(KEY, (2, 5))           # a combinator
    jl.output_shape(mine, (2, 3))
    jax.eval_shape(mine.init, KEY, S((2, 3), jnp.float32))
    assert seen and all(s == S((2, 3), jnp.float32) for s in seen), seen
    seen.clear()
    mine.init(KEY, ((2, 3), jl.Masked((2, 4, 1), (2, 4)), {"ids": S((2,), jnp.int32)}))
    spec, = seen
    assert spec == (S((2, 3), jnp.float32), jl.Masked(S((2, 4, 1), jnp.float32),
                                                      S((2, 4), jnp.bool_)),
                    {"ids": S((2,), jnp.int32)})
    with pytest.raises(TypeError, match="input spec must be a shape tuple"):
        mine.init(KEY, "2x3")
    with pytest.raises(ValueError, match="Mine: init needs an input spec"):
        mine.init(KEY)


def test_a_plain_shape_stands_for_the_first_layers_input_dtype():
    model = jl.serial(jl.Embedding(10, 4), jl.LSTM(3))
    assert jl.output_shape(model, (2, 5)) == (2, 3)  # (2, 5) read as int32 token ids


# ------------------------------------------------------------------------ keyword inputs

def test_an_unknown_keyword_input_is_a_type_error_naming_the_layer():
    dense = jl.Dense(2)
    p, s = dense.init(KEY, (1, 3))
    with pytest.raises(TypeError, match=r"Dense: unknown keyword input 'mask' to apply; it "
                                        r"takes no keyword inputs"):
        dense.apply(p, s, jnp.ones((1, 3)), mask=jnp.ones((1,), bool))
    lstm = jl.LSTM(2)
    p, s = lstm.init(KEY, (1, 4, 3))
    with pytest.raises(TypeError, match=r"LSTM: unknown keyword input 'initial_sate' to "
                                        r"apply; its keyword inputs are \['initial_state', "
                                        r"'lengths', 'mask'\]"):
        lstm.apply(p, s, jnp.ones((1, 4, 3)), initial_sate=None)


def test_serial_routes_keyword_inputs_to_the_child_named():
    model = jl.serial(embed=jl.Embedding(9, 4), lstm=jl.LSTM(3, return_sequences=True),
                      head=jl.Dense(2))
    params, state = model.init(KEY, (2, 5))
    ids = jax.random.randint(jax.random.key(1), (2, 5), 0, 9)
    h0 = (jax.random.normal(jax.random.key(2), (2, 3)),
          jax.random.normal(jax.random.key(3), (2, 3)))
    y, _ = model.apply(params, state, ids, lstm={"initial_state": h0})
    # by hand: the same three applies with initial_state given to the LSTM
    e, _ = model.children["embed"].apply(params["embed"], {}, ids)
    h, _ = model.children["lstm"].apply(params["lstm"], {}, e, initial_state=h0)
    want, _ = model.children["head"].apply(params["head"], {}, h)
    chex.assert_trees_all_close(y, want)
    assert not np.allclose(y, model.apply(params, state, ids)[0], atol=1e-4)
    positional = jl.serial(jl.Dense(2), jl.LSTM(2))
    pp, ps = positional.init(KEY, (2, 4, 3))
    positional.apply(pp, ps, jnp.ones((2, 4, 3)), **{"1": {"lengths": jnp.array([2, 4])}})
    with pytest.raises(TypeError, match=r"serial: keyword input 'lsmt' names no child; the "
                                        r"children are \['embed', 'head', 'lstm'\]"):
        model.apply(params, state, ids, lsmt={"initial_state": h0})
    with pytest.raises(TypeError, match=r"serial: keyword input 'lstm' must be a dict"):
        model.apply(params, state, ids, lstm=h0)
    with pytest.raises(TypeError, match=r"Dense: unknown keyword input 'initial_state'"):
        model.apply(params, state, ids, head={"initial_state": h0})


def test_residual_and_repeat_pass_keyword_inputs_to_their_layer():
    lstm = jl.LSTM(3, return_sequences=True)
    x = jax.random.normal(jax.random.key(4), (2, 4, 3))
    lengths = jnp.array([1, 4])
    res = jl.residual(lstm)
    p, s = res.init(KEY, x.shape)
    y, _ = res.apply(p, s, x, lengths=lengths)
    chex.assert_trees_all_close(y, x + lstm.apply(p, s, x, lengths=lengths)[0])


# ------------------------------------------------------------------------ Masked

def test_masked_is_a_pytree_class_not_a_tuple():
    m = jl.Masked(jnp.ones((2, 3, 4)), jnp.ones((2, 3), bool))
    assert not isinstance(m, tuple)
    leaves, treedef = jax.tree.flatten(m)
    assert [a.shape for a in leaves] == [(2, 3, 4), (2, 3)]
    assert isinstance(jax.tree.unflatten(treedef, leaves), jl.Masked)
    doubled = jax.jit(lambda m: jl.Masked(m.values * 2, m.mask))(m)
    assert isinstance(doubled, jl.Masked) and float(doubled.values[0, 0, 0]) == 2.0
    assert jax.tree.map(jnp.shape, m) == jl.Masked((2, 3, 4), (2, 3))


# ------------------------------------------------------------------------ fanout by name

def test_fanout_by_name_feeds_a_keyword_parallel_and_a_merge():
    main, skip = jl.Dense(3, activation="tanh"), jl.Dense(3)
    model = jl.serial(jl.fanout("main", "skip"), jl.parallel(main=main, skip=skip), jl.Add())
    params, state = model.init(KEY, (2, 4))
    x = jax.random.normal(jax.random.key(5), (2, 4))
    y, _ = model.apply(params, state, x)
    p = jax.tree.map(np.asarray, params[1])
    want = np.tanh(np.asarray(x) @ p["main"]["kernel"] + p["main"]["bias"]) + \
        np.asarray(x) @ p["skip"]["kernel"] + p["skip"]["bias"]
    chex.assert_trees_all_close(y, want, rtol=1e-5, atol=1e-6)
    copies, _ = jl.fanout("a", "b").apply({}, {}, x)
    assert list(copies) == ["a", "b"] and copies["a"] is x
    cat, _ = jl.Concatenate().apply({}, {}, {"b": x[:, :1], "a": x})
    chex.assert_trees_all_close(cat, np.concatenate([x[:, :1], x], -1))  # the dict's order


# ------------------------------------------------------------------------ stateful RNNs

def _numpy_lstm(p, x, h, c):
    """Keras's LSTM by hand: gates i, f, c, o; returns all h and the final (h, c)."""
    w, u, b = (np.asarray(p[k], np.float64) for k in ("kernel", "recurrent_kernel", "bias"))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    hs = []
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ w + h @ u + b, 4, axis=-1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), h, c


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
def test_stateful_layers_carry_state_between_calls(kind):
    layer = getattr(jl, kind)(4, return_sequences=True, stateful=True)
    x = np.asarray(jax.random.normal(jax.random.key(6), (3, 7, 2)))
    params, state = layer.init(KEY, (3, 3, 2))
    assert set(state["carry"]) == ({"h", "c"} if kind == "LSTM" else {"h"})
    y1, state = layer.apply(params, state, x[:, :3])
    y2, state = layer.apply(params, state, x[:, 3:])
    whole, _ = getattr(jl, kind)(4, return_sequences=True).apply(params, {}, x)
    chex.assert_trees_all_close(np.concatenate([y1, y2], 1), whole, rtol=1e-5, atol=1e-6)
    if kind == "LSTM":  # against NumPy, not only the layer itself
        ref, h, c = _numpy_lstm(params, x.astype(np.float64), np.zeros((3, 4)),
                                np.zeros((3, 4)))
        chex.assert_trees_all_close(np.concatenate([y1, y2], 1), ref, rtol=1e-5, atol=1e-5)
        chex.assert_trees_all_close((state["carry"]["h"], state["carry"]["c"]), (h, c),
                                    rtol=1e-5, atol=1e-5)
    reset = jl.reset_state(state)
    chex.assert_trees_all_equal(reset["carry"], jax.tree.map(jnp.zeros_like, state["carry"]))
    fresh, _ = layer.apply(params, reset, x[:, 3:])
    chex.assert_trees_all_close(fresh, getattr(jl, kind)(4, return_sequences=True).apply(
        params, {}, x[:, 3:])[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=rf"{kind}: stateful=True keeps a carry for batch size "
                                         rf"3 \(from init\), got an input of batch size 2"):
        layer.apply(params, state, x[:2])


def test_stateful_truncated_bptt_in_serial_and_fit():
    model = jl.serial(jl.LSTM(5, return_sequences=True, stateful=True), jl.Dense(1))
    params, state = model.init(KEY, (4, 6, 1))
    t = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 18, 1) / 20.0
    xs = np.concatenate([t[:, i * 6:(i + 1) * 6] for i in range(3)], 0)  # chunk 0, 1, 2
    ys = np.sin(xs)
    import optax
    ts, history = jl.fit(model, (params, state), (xs, ys), loss=jl.losses.mse,
                         optimizer=optax.adam(1e-2), epochs=2, batch_size=4,
                         key=KEY, shuffle=False, metrics=("loss",), verbose=False)
    params2, state2 = ts.params, ts.state
    assert np.isfinite(history["loss"]).all()
    carry = state2[0]["carry"]
    assert carry["h"].shape == (4, 5) and float(jnp.abs(carry["h"]).sum()) > 0
    # the gradient stops at the kept carry: the loss of a call does not depend on the
    # params through the state the previous call left
    def loss(p, s):
        y, s = model.apply(p, s, xs[:4])
        y, _ = model.apply(p, s, xs[4:8])
        return jnp.sum(y)
    g = jax.grad(loss)(params2, state2)
    def second_only(p):
        _, s = model.apply(params2, state2, xs[:4])
        y, _ = model.apply(p, s, xs[4:8])
        return jnp.sum(y)
    chex.assert_trees_all_close(g, jax.grad(second_only)(params2), rtol=1e-5, atol=1e-6)


def test_no_public_name_shadows_a_module_of_the_package():
    """Issue 9: `jaxlayers.<name>` is one thing. A function exported under the name of a
    module (as `jl.fit` over a `jaxlayers/fit.py`) hides the module from `import
    jaxlayers.<name>` users and from documentation tools; such modules are private."""
    import pkgutil

    modules = {m.name for m in pkgutil.iter_modules(jl.__path__)}
    import inspect
    clashes = [n for n in jl.__all__ if n in modules and not inspect.ismodule(getattr(jl, n))]
    assert not clashes, clashes
    for package in (jl.models, jl.layers if hasattr(jl, "layers") else None):
        if package is None:
            continue
        inner = {m.name for m in pkgutil.iter_modules(package.__path__)}
        public = getattr(package, "__all__", [])
        assert not [n for n in public if n in inner and not inspect.ismodule(
            getattr(package, n))], package.__name__
