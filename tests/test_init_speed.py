"""Layer.init traced (a user's jit, vmap, eval_shape): one cached jit per spec, random ops
batched (issue 13, item 4).

The reference is the raw path (`jaxlayers._init_cache.raw_init()`: every init function run op by
op, eagerly, as a concrete-key init still runs) in the same process; params must match it
bit for bit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl
import jaxlayers._init_cache
from jaxlayers._init_cache import raw_init

SPEC = (2, 12, 10, 3)


def _models():
    return {
        "cnn": (jl.serial(jl.Conv2D(6, (3, 5), strides=(2, 1)), jl.BatchNorm(),
                          jl.Conv2D(7, 1, use_bias=False), jl.Flatten(), jl.Dense(3)), SPEC),
        "keyword": (jl.serial(body=jl.serial(jl.Dense(9), jl.Dense(9), jl.LayerNorm()),
                              head=jl.Dense(4, kernel_init=jl.initializers.he_normal())),
                    (3, 7)),
        "lstm": (jl.serial(jl.LSTM(5, return_sequences=True), jl.GRU(4)), (2, 6, 3)),
        "repeat": (jl.serial(jl.Dense(6), jl.repeat(jl.Dense(6), 3)), (2, 5)),
        "embed": (jl.serial(jl.Embedding(11, 8), jl.MultiHeadAttention(2, 3)), (2, 5)),
    }


MODELS = _models()


@pytest.fixture(autouse=True)
def jit_every_init(monkeypatch):
    """Small models would run raw (below `_JIT_MIN_RANDOM_OPS`); here every init is jitted."""
    monkeypatch.setattr(jaxlayers._init_cache, "_JIT_MIN_RANDOM_OPS", 0)


def _bits(tree):
    return [(np.asarray(a).dtype, np.asarray(a).shape, np.asarray(a).tobytes())
            for a in jax.tree.leaves(tree)]


def _jit(model, key, spec):
    return jax.jit(lambda k: model.init(k, spec))(key)


def _raw(model, key, spec):
    with raw_init():
        return model.init(key, spec)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_params_are_bit_identical_to_the_raw_init(name):
    model, spec = MODELS[name]
    key = jax.random.PRNGKey(5) if name == "cnn" else jax.random.key(3)  # raw and typed keys
    expected = _raw(model, key, spec)
    got = _jit(model, key, spec)
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    assert _bits(got) == _bits(expected)


def test_bits_match_without_partitionable_threefry_and_with_rbg_keys():
    model, spec = MODELS["keyword"]
    before = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", not before)
    try:
        key = jax.random.key(7)
        assert _bits(_jit(model, key, spec)) == _bits(_raw(model, key, spec))
    finally:
        jax.config.update("jax_threefry_partitionable", before)
    key = jax.random.key(7, impl="rbg")
    assert _bits(_jit(model, key, spec)) == _bits(_raw(model, key, spec))


def _random_ops(jaxpr) -> int:
    """Random primitives in a jaxpr, nested calls included."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name in ("random_bits", "random_fold_in", "random_split")
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", value)
            if hasattr(inner, "eqns"):
                count += _random_ops(inner)
    return count


@pytest.mark.parametrize("partitionable", [True, False])
def test_random_ops_are_batched_into_few_calls(monkeypatch, partitionable):
    """Partitionable threefry (the default): each group of bits is one written-out threefry,
    each group of key derivations one jax random primitive; otherwise all primitives."""
    hashes = []
    written_out = jaxlayers._init_cache._threefry_bits
    monkeypatch.setattr(jaxlayers._init_cache, "_threefry_bits",
                        lambda *args: hashes.append(1) or written_out(*args))
    model = jl.serial(*[jl.Dense(n) for n in (6, 7, 6, 9, 5, 6, 7)])
    key = jax.random.key(0)

    def calls(init):
        return _random_ops(jax.make_jaxpr(init)(key).jaxpr) + len(hashes)

    before = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", partitionable)
    try:
        raw = calls(lambda k: _raw(model, k, (2, 4)))
        batched = calls(lambda k: model.init(k, (2, 4)))
    finally:
        jax.config.update("jax_threefry_partitionable", before)
    # 7 fold_ins, 7 splits (kernel, bias), 7 kernels' bits; batched: one fold_in, one
    # split, the bits in two size classes (24..32 and 42..54 numbers); not partitionable:
    # by exact size (24, 30, 42, 45, 54)
    assert (raw, batched, len(hashes)) == ((21, 4, 2) if partitionable else (21, 7, 0))


def test_the_written_out_threefry_gives_jax_randoms_bits():
    """8-, 16- and 32-bit draws of 3-D, odd and 2-D shapes, from split and folded
    keys, through `_threefry_bits`: bit for bit jax.random's."""
    def init(key, spec):
        k1, k2, k3 = jax.random.split(key, 3)
        folded = jax.random.fold_in(k3, 2 ** 31 + 7)
        params = {"u8": jax.random.bits(k1, (3, 5, 7), jnp.uint8),
                  "u16": jax.random.bits(k2, (11,), jnp.uint16),
                  "folded": jax.random.bits(folded, (4, 9), jnp.uint32),
                  "grid": jax.random.key_data(jax.random.split(k1, (2, 3))),
                  "big": jax.random.uniform(k2, (3, 40_009), jnp.float32, -2.0, 0.5)}
        return params, {}

    layer = jl.Layer(init, lambda p, s, x, **_: (x, s))
    key = jax.random.key(11)
    jaxpr = jax.make_jaxpr(lambda k: layer.init(k, (1,)))(key).jaxpr
    assert _random_ops(jaxpr) == 3  # the 2 splits and the fold_in; none of the 5 bits
    assert _bits(_jit(layer, key, (1,))) == _bits(_raw(layer, key, (1,)))


def _counting_layer():
    traces = []

    def init(key, spec):
        traces.append(spec)
        kernel = jax.random.normal(key, (spec.shape[-1], 3), jnp.float32)
        return {"kernel": kernel.astype(spec.dtype)}, {"seen": 1, "table": np.arange(3)}

    def apply(params, state, x, *, key=None, training=False):
        return x @ params["kernel"], state

    return jl.Layer(init, apply, name="Counting"), traces


def test_a_second_init_with_the_same_spec_does_not_retrace():
    layer, traces = _counting_layer()
    key = jax.random.key(1)
    first = _jit(layer, key, (2, 4))               # a fresh user jit each time
    _jit(layer, jax.random.key(2), (2, 4))
    assert len(traces) == 1
    _jit(layer, key, (3, 4))                                      # another shape
    _jit(layer, key, jax.ShapeDtypeStruct((2, 4), jnp.bfloat16))  # another dtype
    _jit(layer, jax.random.PRNGKey(1), (2, 4))                    # another key type
    assert len(traces) == 4
    again = _jit(layer, key, (2, 4))
    assert len(traces) == 4
    assert _bits(again) == _bits(first)
    np.testing.assert_array_equal(
        again[0]["kernel"], jax.random.normal(key, (4, 3), jnp.float32))
    # a concrete key runs the init function itself, eagerly, every time (as before):
    # Python and NumPy leaves come back as they are
    params, state = layer.init(key, (2, 4))
    assert len(traces) == 5 and _bits(params) == _bits(first[0])
    assert type(state["seen"]) is int and type(state["table"]) is np.ndarray


def test_an_init_with_few_random_ops_runs_raw_and_a_large_one_is_jitted(monkeypatch):
    monkeypatch.setattr(jaxlayers._init_cache, "_JIT_MIN_RANDOM_OPS", 4)
    layer, traces = _counting_layer()          # 1 random op: raw on every call
    for _ in range(2):
        _jit(layer, jax.random.key(1), (2, 4))
    assert len(traces) == 3                    # the planning trace, then two raw calls
    model = jl.serial(jl.Dense(3), jl.Dense(2))  # 2 fold_ins + 2 splits + 2 bits: jitted
    _jit(model, jax.random.key(1), (2, 4))
    (entry,) = model.init._jl_cache.values()
    assert entry is not None


def test_eval_shape_and_a_users_jit_still_work():
    model, spec = MODELS["cnn"]
    key = jax.random.key(4)
    shapes = jax.eval_shape(lambda k: model.init(k, spec), key)
    expected = _raw(model, key, spec)
    assert jax.tree.map(lambda s: (s.shape, s.dtype), shapes) == jax.tree.map(
        lambda a: (a.shape, a.dtype), expected)
    assert _bits(jax.jit(lambda k: model.init(k, spec))(key)) == _bits(expected)
    keys = jax.random.split(key, 2)
    stacked = jax.jit(jax.vmap(lambda k: model.init(k, spec)))(keys)
    assert _bits(jax.tree.map(lambda a: a[1], stacked)) == _bits(_raw(model, keys[1], spec))


def test_an_init_that_needs_concrete_values_still_runs_on_a_concrete_key():
    def init(key, spec):
        seed = int(np.asarray(jax.random.key_data(key)).sum() % 1000)
        return {"w": jnp.full((2,), float(seed))}, {}

    layer = jl.Layer(init, lambda p, s, x, **_: (x, s))
    key = jax.random.key(9)
    expected = float(np.asarray(jax.random.key_data(key)).sum() % 1000)
    for _ in range(2):
        assert layer.init(key, (1, 2))[0]["w"].tolist() == [expected, expected]
    with pytest.raises(jax.errors.JAXTypeError):  # as before: it cannot be traced
        _jit(layer, key, (1, 2))


def test_bad_input_still_raises_at_init_naming_the_layer():
    conv = jl.Conv2D(4, 3)
    for _ in range(2):  # a failed trace is not cached as a success
        with pytest.raises(ValueError, match="Conv2D"):
            _jit(conv, jax.random.key(0), (2, 8))
    with pytest.raises(ValueError, match="Conv2D"):
        conv.init(jax.random.key(0), (2, 8))
    with pytest.raises(ValueError, match="Dense: init needs an input spec"):
        jl.Dense(3).init(jax.random.key(0))


def test_the_init_benchmark_says_how_to_get_flax_when_it_is_missing(monkeypatch):
    import importlib
    import pathlib
    import sys

    monkeypatch.syspath_prepend(str(pathlib.Path(__file__).resolve().parents[1]))
    monkeypatch.setitem(sys.modules, "flax", None)  # import flax -> ImportError
    bench = importlib.import_module("benchmarks.init")
    with pytest.raises(SystemExit, match=r"pip install 'jaxlayers\[bench\]'"):
        bench.main(["--repeats", "1"])
