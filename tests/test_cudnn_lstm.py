"""jl.LSTM's cuDNN path (jaxlayers/layers/_cudnn.py), tested without a GPU.

`jax.experimental.rnn.lstm` has no CPU kernel, but `jax.experimental.rnn.lstm_ref` is its
reference in JAX, with cuDNN's flat weight layout (read back by `unpack_lstm_weights`),
gate order and seq_lengths semantics. Our params packed for cuDNN and run through
lstm_ref must give the scan's outputs, final h and c, and gradients; the layer's dispatch
is exercised by standing lstm_ref in for cuDNN and "cuda" for the backend.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn

import jaxlayers as jl
from jaxlayers.layers import _cudnn

N, T, D, U = 4, 6, 5, 7
LENGTHS = np.array([6, 3, 0, 1], np.int32)  # unequal, one empty, one of a single step


def reference_lstm(x, h0, c0, weights, seq_lengths, *, input_size, hidden_size):
    """cuDNN's LSTM as JAX documents it: the flat vector unpacked by JAX's own layout
    function, run by `lstm_ref` (one layer, one direction, no dropout)."""
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size, 1,
                                                     False)
    return rnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, seq_lengths, input_size,
                        hidden_size, 1, 0.0, False)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, D)).astype(np.float32)
    h0 = (0.5 * rng.standard_normal((N, U))).astype(np.float32)
    c0 = (0.5 * rng.standard_normal((N, U))).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(h0), jnp.asarray(c0)


def _params(layer, seed=1):
    params, _ = layer.init(jax.random.key(seed), (N, T, D))
    # a nonzero bias everywhere (init's is zeros but for the forget gate's ones)
    if "bias" in params:
        params["bias"] = params["bias"] + 0.1 * jax.random.normal(jax.random.key(seed + 1),
                                                                  params["bias"].shape)
    return params


@pytest.mark.parametrize("use_bias", [True, False])
def test_packed_params_through_lstm_ref_equal_the_scan_with_unequal_lengths(use_bias):
    layer = jl.LSTM(U, use_bias=use_bias, return_sequences=True, return_state=True)
    params = _params(layer)
    x, h0, c0 = _inputs()
    (ys, h, c), _ = jax.jit(functools.partial(layer.apply, lengths=LENGTHS))(
        params, {}, x, initial_state=(h0, c0))
    ys2, (h2, c2) = jax.jit(_cudnn.run_lstm, static_argnums=(4, 5))(
        params, x, (h0, c0), jnp.asarray(LENGTHS), U, reference_lstm)
    chex.assert_trees_all_close(ys2, ys, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(h2, h, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(c2, c, rtol=1e-5, atol=1e-6)
    # the empty row kept its initial state; the padded steps output zeros
    np.testing.assert_array_equal(h2[2], h0[2])
    assert not np.any(np.asarray(ys2)[1, 3:]) and np.all(np.asarray(ys2)[0, -1] != 0)


def test_gradients_through_lstm_ref_equal_the_scans_wrt_params_inputs_and_state():
    layer = jl.LSTM(U, return_sequences=True, return_state=True)
    params = _params(layer, seed=3)
    x, h0, c0 = _inputs(seed=4)
    rng = np.random.default_rng(5)
    wy, wh, wc = (jnp.asarray(rng.standard_normal(s).astype(np.float32))
                  for s in ((N, T, U), (N, U), (N, U)))

    def objective(ys, h, c):  # weights on every output: no cotangent is uniform
        return jnp.sum(ys * wy) + jnp.sum(h * wh) + jnp.sum(c * wc)

    def scan(params, x, h0, c0):
        (ys, h, c), _ = layer.apply(params, {}, x, initial_state=(h0, c0), lengths=LENGTHS)
        return objective(ys, h, c)

    def cudnn(params, x, h0, c0):
        ys, (h, c) = _cudnn.run_lstm(params, x, (h0, c0), jnp.asarray(LENGTHS), U,
                                     lstm=reference_lstm)
        return objective(ys, h, c)

    want = jax.jit(jax.grad(scan, argnums=(0, 1, 2, 3)))(params, x, h0, c0)
    got = jax.jit(jax.grad(cudnn, argnums=(0, 1, 2, 3)))(params, x, h0, c0)
    chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-5)
    # the padded steps of x get no gradient, the empty row's h0 all of h's
    assert not np.any(np.asarray(got[1])[1, 3:])
    np.testing.assert_allclose(got[2][2], wh[2], rtol=1e-6)


def test_the_flat_vector_has_cudnns_size_and_layout():
    layer = jl.LSTM(U)
    params = _params(layer)
    flat = _cudnn.pack_weights(params, U)
    assert flat.shape == (rnn.get_num_params_in_lstm(D, U, 1, False),)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, D, U, 1, False)
    # gate order i, f, g, o on both sides: cuDNN's forget rows are our forget columns
    np.testing.assert_array_equal(w_ih[0][U:2 * U], params["kernel"][:, U:2 * U].T)
    np.testing.assert_array_equal(w_hh[0], params["recurrent_kernel"].T)
    np.testing.assert_array_equal(b_ih[0], params["bias"])
    np.testing.assert_array_equal(b_hh[0], np.zeros(4 * U, np.float32))


# --------------------------------------------------------------------------- the rule

FITS = dict(activation="tanh", recurrent_activation="sigmoid", go_backwards=False,
            recurrent_dropout=0.0, padding="lengths", dtype=jnp.float32)


@pytest.mark.parametrize("backend, want", [("cuda", True), ("cpu", False), ("tpu", False),
                                           ("rocm", False)])
def test_the_rule_takes_cudnn_on_cuda_only_and_only_when_asked(backend, want):
    for padding in ("lengths", "none"):
        config = {**FITS, "padding": padding}
        assert _cudnn.uses_cudnn(backend, implementation="cudnn", **config) is want
        # opt-in: never by default, not even on CUDA with cuDNN's configuration
        assert not _cudnn.uses_cudnn(backend, implementation=None, **config)


@pytest.mark.parametrize("change, reason", [
    ({"activation": "relu"}, "activation 'relu' is not 'tanh'"),
    ({"recurrent_activation": "tanh"}, "recurrent_activation 'tanh' is not 'sigmoid'"),
    ({"go_backwards": True}, "go_backwards=True"),
    ({"recurrent_dropout": 0.2}, "recurrent_dropout=0.2"),
    ({"padding": "mask"}, "a mask"),
    ({"dtype": jnp.bfloat16}, "compute dtype bfloat16"),
    ({"dtype": jnp.float16}, "compute dtype float16"),
])
def test_the_rule_keeps_the_scan_where_cudnn_computes_something_else(change, reason):
    config = {**FITS, **change}
    (got,) = _cudnn.cudnn_misfits(**config)
    assert got.startswith(reason), got
    assert not _cudnn.uses_cudnn("cuda", implementation="cudnn", **config)


def test_the_rule_keeps_the_scan_when_another_formulation_is_asked_for():
    assert _cudnn.cudnn_misfits(**{**FITS, "activation": jl.activations.tanh}) == []
    for implementation in ("inside", "hoisted", "fused", None):
        assert not _cudnn.uses_cudnn("cuda", implementation=implementation, **FITS)


# --------------------------------------------------------------------------- dispatch

@pytest.fixture
def fake_cuda(monkeypatch):
    """The layer sees a CUDA backend, and cuDNN's kernel is lstm_ref: counts its calls."""
    calls = []

    def kernel(*args, **kwargs):
        calls.append(args[0].shape)
        return reference_lstm(*args, **kwargs)

    monkeypatch.setattr(_cudnn, "backend", lambda: "cuda")
    monkeypatch.setattr(_cudnn, "_cudnn_lstm", kernel)
    return calls


@pytest.mark.parametrize("kwargs, inputs", [
    (dict(return_sequences=True), dict(lengths=LENGTHS)),
    (dict(return_state=True, unit_forget_bias=False), dict()),
    (dict(return_sequences=True, return_state=True, dropout=0.3), dict(lengths=LENGTHS)),
])
def test_on_cuda_the_layer_runs_cudnn_and_equals_the_scan(fake_cuda, kwargs, inputs):
    x, h0, c0 = _inputs(seed=6)
    scan_layer = jl.LSTM(U, **kwargs)  # the default: the scan, on CUDA too
    layer = jl.LSTM(U, implementation="cudnn", **kwargs)
    params = _params(layer, seed=7)
    key = jax.random.key(8)
    run = dict(initial_state=(h0, c0), key=key, training=True, **inputs)
    want, _ = scan_layer.apply(params, {}, x, **run)
    assert fake_cuda == []
    got, _ = layer.apply(params, {}, x, **run)
    assert fake_cuda == [(N, T, D)]
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, inputs", [
    (dict(), dict(lengths=LENGTHS)),  # cuDNN's configuration, but not asked for
    (dict(go_backwards=True), dict(lengths=LENGTHS)),
    (dict(recurrent_dropout=0.2), dict()),
    (dict(), dict(mask=np.arange(T)[None, :] % 2 == np.arange(N)[:, None] % 2)),
    (dict(activation="relu"), dict()),
    (dict(implementation="inside"), dict()),
])
def test_on_cuda_a_configuration_cudnn_does_not_compute_keeps_the_scan(fake_cuda, kwargs,
                                                                        inputs):
    x, _, _ = _inputs()
    layer = jl.LSTM(U, **kwargs)
    params = _params(layer)
    layer.apply(params, {}, x, key=jax.random.key(0), training=True, **inputs)
    assert fake_cuda == []


def test_implementation_cudnn_where_it_cannot_run_is_a_value_error(monkeypatch):
    x, _, _ = _inputs()
    layer = jl.LSTM(U, implementation="cudnn")
    params = _params(layer)
    with pytest.raises(ValueError, match="LSTM: implementation='cudnn' cannot run here: the "
                                         "backend is 'cpu', and jax.experimental.rnn.lstm runs "
                                         "on CUDA GPUs only"):
        layer.apply(params, {}, x)
    with pytest.raises(ValueError, match="LSTM: implementation='cudnn' differentiates with "
                                         "cuDNN's own backward pass; derivative must be None, "
                                         "got 'custom'"):
        jl.LSTM(U, implementation="cudnn", derivative="custom")
    monkeypatch.setattr(_cudnn, "backend", lambda: "cuda")
    backwards = jl.LSTM(U, implementation="cudnn", go_backwards=True)
    with pytest.raises(ValueError, match="LSTM: implementation='cudnn' cannot run here: "
                                         "go_backwards=True. Leave implementation=None"):
        backwards.apply(params, {}, x)
    with pytest.raises(ValueError, match="implementation must be one of"):
        jl.GRU(U, implementation="cudnn")  # the GRU has no cuDNN path


def test_bidirectional_runs_cudnn_both_ways_without_padding_and_refuses_a_mask(fake_cuda):
    x, _, _ = _inputs(seed=9)
    layer = jl.Bidirectional(jl.LSTM(U, return_sequences=True, implementation="cudnn"))
    scan_layer = jl.Bidirectional(jl.LSTM(U, return_sequences=True))
    params, state = layer.init(jax.random.key(2), (N, T, D))
    want, _ = scan_layer.apply(params, state, x)
    got, _ = layer.apply(params, state, x)
    assert fake_cuda == [(N, T, D)] * 2  # the backward copy reads the flipped input
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
    # lengths= reach the wrapped layers as a jl.Masked (reversed within each length):
    # a mask, which cuDNN cannot take
    with pytest.raises(ValueError, match="implementation='cudnn' cannot run here: a mask"):
        layer.apply(params, state, x, lengths=LENGTHS)
    assert len(fake_cuda) == 2
