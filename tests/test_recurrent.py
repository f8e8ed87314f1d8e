"""SimpleRNN, LSTM, GRU, their cells and Bidirectional: PyTorch parity, seeds, masks, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxlayers import Masked, count_params
from jaxlayers.initializers import orthogonal
from jaxlayers.interop import from_torch
from jaxlayers.layers.recurrent import (GRU, LSTM, GRUCell, LSTMCell, SimpleRNN,
                                        SimpleRNNCell)
from jaxlayers.layers.wrappers import Bidirectional

KEY = jax.random.key(0)
N, T, D, H = 3, 5, 3, 4
LAYERS = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}
TORCH = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
# PyTorch's GRU puts the reset gate after the recurrent matmul: our reset_after=True
RESET_AFTER = {"GRU": {"reset_after": True}}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _np(tensors):
    return {k: v.detach().numpy().copy() for k, v in tensors.items()}


def _grads(module, zero_bias_hh):
    g = {k: p.grad.numpy().copy() for k, p in module.named_parameters()}
    if zero_bias_hh:  # our one bias is bias_ih + bias_hh: its gradient is either one's
        for k in g:
            if k.startswith("bias_hh"):
                g[k] = np.zeros_like(g[k])
    return g


def _close(a, b, tol=1e-5):
    chex.assert_trees_all_close(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _tree_close(a, b, tol=1e-5):
    """The same tree structure, and every pair of leaves close."""
    chex.assert_trees_all_close(a, b, rtol=tol, atol=tol)


def _apply(layer, params, x, **kw):
    state = {"forward": {}, "backward": {}} if "forward" in params else {}  # Bidirectional's
    return layer.apply(params, state, x, **kw)[0]


# ------------------------------------------------------------------ PyTorch parity

@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_matches_torch_outputs_final_states_and_gradients(kind):
    torch.manual_seed(0)
    module = TORCH[kind](D, H, batch_first=True)
    layer = LAYERS[kind](H, return_sequences=True, return_state=True,
                         **RESET_AFTER.get(kind, {}))
    params = from_torch(kind, _np(module.state_dict()))
    rng = _rng(1)
    x = rng.normal(size=(N, T, D)).astype(np.float32)
    n_states = 2 if kind == "LSTM" else 1
    states0 = [rng.normal(size=(N, H)).astype(np.float32) for _ in range(n_states)]
    weights = [rng.normal(size=s).astype(np.float32) for s in [(N, T, H)] + [(N, H)] * n_states]

    xt = torch.tensor(x, requires_grad=True)
    init_t = tuple(torch.tensor(s)[None] for s in states0)
    out_t, st_t = module(xt, init_t if kind == "LSTM" else init_t[0])
    st_t = [s[0] for s in (st_t if kind == "LSTM" else (st_t,))]
    loss_t = sum((o * torch.tensor(w)).sum() for o, w in zip([out_t] + st_t, weights))
    loss_t.backward()

    def loss(params, x):
        outs = _apply(layer, params, x, initial_state=tuple(states0))
        return sum(jnp.sum(o * w) for o, w in zip(outs, weights)), outs

    (_, outs), (g_params, g_x) = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(params, x)
    for ours, theirs in zip(outs, [out_t] + st_t):
        _close(ours, theirs.detach().numpy())
    _close(g_x, xt.grad.numpy())
    _tree_close(g_params, from_torch(kind, _grads(module, kind != "GRU")))


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_bidirectional_matches_torch_on_packed_sequences(kind):
    torch.manual_seed(1)
    module = TORCH[kind](D, H, batch_first=True, bidirectional=True)
    layer = Bidirectional(LAYERS[kind](H, return_sequences=True, return_state=True,
                                       **RESET_AFTER.get(kind, {})))
    params = from_torch("Bidirectional", _np(module.state_dict()), kind=kind)
    rng = _rng(2)
    lengths = np.array([5, 2, 4])
    x = rng.normal(size=(N, T, D)).astype(np.float32)  # the padding holds noise, not zeros
    w_out = rng.normal(size=(N, T, 2 * H)).astype(np.float32)
    w_h = rng.normal(size=(2, N, H)).astype(np.float32)

    xt = torch.tensor(x, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    out_p, st = module(packed)
    h_n = st[0] if kind == "LSTM" else st
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=True, total_length=T)
    ((out_t * torch.tensor(w_out)).sum() + (h_n * torch.tensor(w_h)).sum()).backward()

    def loss(params, x):
        y, *states = _apply(layer, params, x, lengths=jnp.asarray(lengths))
        h_f, h_b = states[0], states[len(states) // 2]
        return jnp.sum(y * w_out) + jnp.sum(h_f * w_h[0]) + jnp.sum(h_b * w_h[1]), (y, h_f, h_b)

    (_, (y, h_f, h_b)), (g_params, g_x) = jax.jit(
        jax.value_and_grad(loss, (0, 1), has_aux=True))(params, x)
    _close(y, out_t.detach().numpy())
    _close(h_f, h_n[0].detach().numpy())
    _close(h_b, h_n[1].detach().numpy())
    _close(g_x, xt.grad.numpy())
    _tree_close(g_params, from_torch("Bidirectional", _grads(module, kind != "GRU"), kind=kind))


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_gru_default_follows_the_seed_equations_numpy_reference():
    """Seed 004: z, r on [h, x]; h~ = tanh(W[r*h, x]); h = (1 - z) h_prev + z h~."""
    layer = GRU(H, return_sequences=True)
    params, _ = layer.init(KEY, (N, T, D))
    rng = _rng(3)
    params["bias"] = jnp.asarray(rng.normal(size=3 * H), jnp.float32)
    x = rng.normal(size=(N, T, D)).astype(np.float32)
    W, U, b = (np.asarray(params[k], np.float64) for k in ("kernel", "recurrent_kernel", "bias"))
    h, hs = np.zeros((N, H)), []
    for t in range(T):
        z = _sigmoid(x[:, t] @ W[:, :H] + h @ U[:, :H] + b[:H])
        r = _sigmoid(x[:, t] @ W[:, H:2 * H] + h @ U[:, H:2 * H] + b[H:2 * H])
        h_cand = np.tanh(x[:, t] @ W[:, 2 * H:] + (r * h) @ U[:, 2 * H:] + b[2 * H:])
        h = (1 - z) * h + z * h_cand
        hs.append(h)
    _close(_apply(layer, params, x), np.stack(hs, axis=1))


# ------------------------------------------------------------------ masks and direction

def _make(kind, **kw):
    if kind == "Bidirectional":
        return Bidirectional(LSTM(H, **kw))
    return LAYERS[kind](H, **kw)


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU", "Bidirectional"])
def test_padded_batch_equals_each_sequence_run_alone(kind):
    layer = _make(kind, return_sequences=True, return_state=True)
    params, _ = layer.init(KEY, (2, 4, D))
    lengths = np.array([4, 2])
    x = _rng(4).normal(size=(2, 4, D)).astype(np.float32)
    y, *states = _apply(layer, params, x, lengths=jnp.asarray(lengths))
    for i, n in enumerate(lengths):
        y_i, *states_i = _apply(layer, params, x[i:i + 1, :n])
        _close(y[i, :n], y_i[0])
        # padded steps output zeros
        chex.assert_trees_all_equal(y[i, n:], np.zeros((4 - n, y.shape[-1]), np.float32))
        for s, s_i in zip(states, states_i):
            _close(s[i], s_i[0])
    mask = np.arange(4)[None, :] < lengths[:, None]
    by_mask = _apply(layer, params, x, mask=jnp.asarray(mask))
    by_masked = _apply(layer, params, Masked(jnp.asarray(x), jnp.asarray(mask)))
    _tree_close(by_mask, (y, *states), 0)
    assert isinstance(by_masked[0], Masked)  # the mask travels on with the sequence
    _close(by_masked[0].values, y, 0)
    chex.assert_trees_all_equal(by_masked[0].mask, mask)


def test_go_backwards_reads_in_reverse_and_returns_outputs_in_reading_order():
    fwd = LSTM(H, return_sequences=True, return_state=True)
    bwd = LSTM(H, return_sequences=True, return_state=True, go_backwards=True)
    params, _ = fwd.init(KEY, (2, 4, D))
    x = _rng(5).normal(size=(2, 4, D)).astype(np.float32)
    _tree_close(_apply(bwd, params, x), _apply(fwd, params, x[:, ::-1]))
    # with padding at the end, reading backwards starts on padded steps, which are skipped
    y, h, c = _apply(bwd, params, Masked(jnp.asarray(x), jnp.asarray([[1, 1, 1, 1], [1, 1, 0, 0]],
                                                                        bool)))
    y_alone, h_alone, _ = _apply(fwd, params, x[1:, :2][:, ::-1])
    _close(h[1], h_alone[0])
    _close(y.values[1, 2:], y_alone[0])
    chex.assert_trees_all_equal(y.values[1, :2], np.zeros((2, H), np.float32))
    chex.assert_trees_all_equal(y.mask[1], np.asarray([False, False, True, True]))


def test_return_state_and_initial_state_shapes():
    x = jnp.ones((2, 3, D))
    for layer, n_states in [(SimpleRNN(H, return_state=True), 1), (GRU(H, return_state=True), 1),
                            (LSTM(H, return_state=True), 2)]:
        params, _ = layer.init(KEY, x.shape)
        y, *states = _apply(layer, params, x)
        assert len(states) == n_states
        chex.assert_shape([y, *states], (2, H))
        _close(y, states[0], 0)  # the output is the last h
        init = tuple(jnp.full((2, H), 0.5) for _ in range(n_states))
        assert not np.allclose(_apply(layer, params, x, initial_state=init)[0], y)


# ------------------------------------------------------------------ dropout

def test_dropout_masks_are_one_per_sequence_reused_at_every_step_and_follow_the_key():
    eye = jnp.eye(D, dtype=jnp.float32)
    # input dropout: h_t = dropout(x_t) @ I with x = 1 shows the mask at each step
    layer = SimpleRNN(D, activation="linear", return_sequences=True, dropout=0.5)
    params = {"kernel": eye, "recurrent_kernel": jnp.zeros((D, D)), "bias": jnp.zeros(D)}
    x = jnp.ones((4, T, D))
    run = jax.jit(lambda k: _apply(layer, params, x, key=k, training=True))
    y1, y1_again, y2 = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    assert set(np.unique(np.asarray(y1))) <= {0.0, 2.0}
    chex.assert_trees_all_equal(y1, jnp.broadcast_to(y1[:, :1], y1.shape))  # same at every t
    chex.assert_trees_all_equal(y1, y1_again)
    assert not np.array_equal(y1, y2)
    _close(_apply(layer, params, x), x, 0)  # inference: no dropout
    with pytest.raises(ValueError, match="SimpleRNN: training=True needs a PRNG key"):
        _apply(layer, params, x, training=True)
    # recurrent dropout: h_t = dropout(h_{t-1}) @ I = h_0 * m^t with one mask m in {0, 2}
    layer = SimpleRNN(D, activation="linear", return_sequences=True, recurrent_dropout=0.5)
    params = {"kernel": jnp.zeros((D, D)), "recurrent_kernel": eye, "bias": jnp.zeros(D)}
    y = _apply(layer, params, jnp.zeros((4, T, D)), initial_state=jnp.ones((4, D)),
               key=jax.random.key(3), training=True)
    m = np.asarray(y[:, 0])
    assert set(np.unique(m)) == {0.0, 2.0}
    _close(y, m[:, None, :] ** np.arange(1, T + 1)[None, :, None], 0)


# ------------------------------------------------------------------ formulations, jvp, cells

FORMULATIONS = [("hoisted", 1, "autodiff"), ("inside", 2, "autodiff"), ("fused", 1, "autodiff"),
                ("hoisted", 1, "custom"), ("inside", 1, "custom"), ("fused", 2, "custom")]
CELL_KINDS = [("SimpleRNN", {}), ("LSTM", {}), ("GRU", {}), ("GRU", {"reset_after": True})]
CELL_IDS = ["SimpleRNN", "LSTM", "GRU", "GRU-reset_after"]


@pytest.mark.parametrize("kind, kw", CELL_KINDS, ids=CELL_IDS)
def test_every_step_formulation_and_derivative_give_equal_outputs_and_gradients(kind, kw):
    layers = [LAYERS[kind](H, return_sequences=True, recurrent_dropout=0.3, dropout=0.2,
                           implementation=form, unroll=unroll, derivative=derivative, **kw)
              for form, unroll, derivative in FORMULATIONS]
    params, _ = layers[0].init(KEY, (2, T, D))
    if "bias" in params:  # nonzero biases, so each bias path is exercised
        params["bias"] = 0.1 * jax.random.normal(jax.random.key(9), params["bias"].shape)
    x = jnp.asarray(_rng(6).normal(size=(2, T, D)), jnp.float32)
    lengths = jnp.asarray([T, 3])

    def loss(params, x, layer):
        y = _apply(layer, params, x, lengths=lengths, key=jax.random.key(4), training=True)
        return jnp.sum(y * jnp.cos(y)), y

    @jax.jit
    def all_forms(params, x):
        return [jax.value_and_grad(loss, (0, 1), has_aux=True)(params, x, la) for la in layers]

    results = all_forms(params, x)
    for other in results[1:]:
        _tree_close(other, results[0], 1e-5)


@pytest.mark.parametrize("kind, kw", CELL_KINDS, ids=CELL_IDS)
def test_custom_derivative_equals_autodiff_in_reverse_forward_and_second_order(kind, kw):
    """derivative="custom" is a JVP rule: jvp, grad (its transpose) and jvp-of-grad must all
    equal JAX's own differentiation of the scan, with padding, go_backwards, both dropouts
    and a differentiated initial state (float64, so the tolerance is tight)."""
    with jax.enable_x64():
        layers = [LAYERS[kind](H, return_sequences=True, return_state=True, go_backwards=True,
                               dropout=0.2, recurrent_dropout=0.3, derivative=derivative,
                               dtype=jnp.float64, param_dtype=jnp.float64, **kw)
                  for derivative in ("autodiff", "custom")]
        params, _ = layers[0].init(KEY, (3, T, D))
        if "bias" in params:
            params["bias"] = 0.3 * jax.random.normal(jax.random.key(9), params["bias"].shape,
                                                     jnp.float64)
        rng = _rng(11)
        x = jnp.asarray(rng.normal(size=(3, T, D)))
        h0 = jnp.asarray(rng.normal(size=(3, H)))
        init = (h0, 0.5 * h0) if kind == "LSTM" else h0
        primals = (params, x, init)
        tangents = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), primals)

        def f(layer, params, x, init):
            out = _apply(layer, params, x, lengths=jnp.asarray([T, 2, 0]), initial_state=init,
                         key=jax.random.key(3), training=True)
            return sum(jnp.sum(jnp.sin(o) * (i + 1)) for i, o in enumerate(out))

        @jax.jit
        def derivatives(primals, tangents):
            out = []
            for layer in layers:
                g = lambda *a: f(layer, *a)  # noqa: E731
                out.append((jax.grad(g, (0, 1, 2))(*primals),
                            jax.jvp(g, primals, tangents)[1],
                            jax.jvp(jax.grad(g), primals, tangents)[1]))
            return out

        autodiff, custom = derivatives(primals, tangents)
        _tree_close(custom, autodiff, 1e-10)


def test_forward_mode_jvp_agrees_with_reverse_mode():
    layer = GRU(H, return_sequences=True, reset_after=True)
    params, _ = layer.init(KEY, (2, T, D))
    x = jnp.asarray(_rng(7).normal(size=(2, T, D)), jnp.float32)
    v_p = jax.tree.map(lambda a: jnp.ones_like(a) * 0.1, params)
    v_x, u = jnp.ones_like(x), jnp.asarray(_rng(8).normal(size=(2, T, H)), jnp.float32)

    @jax.jit
    def both(params, x):
        f = lambda p, xx: _apply(layer, p, xx, lengths=jnp.asarray([T, 2]))  # noqa: E731
        _, tangent = jax.jvp(f, (params, x), (v_p, v_x))
        _, pullback = jax.vjp(f, params, x)
        g_p, g_x = pullback(u)
        dot = sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(g_p), jax.tree.leaves(v_p)))
        return jnp.sum(tangent * u), dot + jnp.sum(g_x * v_x)

    lhs, rhs = both(params, x)
    _close(lhs, rhs, 1e-4)


def _scan_unrolls(fn, *args):
    """(length, unroll) of every `scan` in fn's jaxpr, nested jaxprs included."""
    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "scan":
                yield eqn.params["length"], eqn.params["unroll"]
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's Jaxpr
                    if hasattr(sub, "eqns"):
                        yield from walk(sub)
    return sorted(walk(jax.make_jaxpr(fn)(*args).jaxpr))


def test_lstm_unrolls_the_tangent_scan_completely_up_to_32_steps_and_loops_beyond():
    """unroll=None with derivative="custom": with T <= 32 the tangent scan (transposed:
    the backward loop) is unrolled completely, no loop left (measured 12-19% faster on CPU),
    the primal scan not at all; T = 33 unrolls the tangent scan 8 steps; an explicit
    unroll (True: both complete), the GRU and derivative="autodiff" are unchanged."""
    def unrolls(layer, t):
        params, _ = layer.init(KEY, (2, t, D))
        x = jnp.ones((2, t, D), jnp.float32)
        return _scan_unrolls(jax.grad(lambda p: jnp.sum(_apply(layer, p, x))), params)

    lstm = LSTM(H, derivative="custom")
    assert unrolls(lstm, 32) == [(32, 1), (32, 32)]
    assert unrolls(lstm, 33) == [(33, 1), (33, 8)]
    assert unrolls(LSTM(H, derivative="custom", unroll=3), 7) == [(7, 3), (7, 3)]
    assert unrolls(LSTM(H, derivative="custom", unroll=True), 7) == [(7, 7), (7, 7)]
    assert unrolls(LSTM(H, derivative="autodiff"), 7) == [(7, 1), (7, 1)]
    assert unrolls(GRU(H, derivative="custom"), 7) == [(7, 1), (7, 1)]


@pytest.mark.parametrize("go_backwards", [False, True])
def test_lstm_custom_derivative_past_the_full_unroll_equals_autodiff(go_backwards):
    """T = 37 > 32: the looped primal scan and the tangent scan unrolled 8 steps (37 is not
    a multiple of 8), with unequal lengths and both dropouts, equal to JAX's own
    differentiation of the scan in value, grad and jvp (float64)."""
    t = 37
    with jax.enable_x64():
        layers = [LSTM(3, return_sequences=True, return_state=True, go_backwards=go_backwards,
                       dropout=0.2, recurrent_dropout=0.3, derivative=derivative,
                       dtype=jnp.float64, param_dtype=jnp.float64)
                  for derivative in ("autodiff", "custom")]
        params, _ = layers[0].init(KEY, (2, t, D))
        params["bias"] = 0.3 * jax.random.normal(jax.random.key(9), (12,), jnp.float64)
        rng = _rng(13)
        x = jnp.asarray(rng.normal(size=(2, t, D)))
        primals = (params, x)
        tangents = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), primals)

        def f(layer, params, x):
            out = _apply(layer, params, x, lengths=jnp.asarray([t, 29]), key=jax.random.key(3),
                         training=True)
            return sum(jnp.sum(jnp.sin(o) * (i + 1)) for i, o in enumerate(out))

        @jax.jit
        def derivatives(primals, tangents):
            return [(jax.value_and_grad(lambda *a: f(layer, *a), (0, 1))(*primals),
                     jax.jvp(lambda *a: f(layer, *a), primals, tangents)[1])
                    for layer in layers]

        autodiff, custom = derivatives(primals, tangents)
        assert float(jnp.abs(autodiff[0][1][0]["recurrent_kernel"]).max()) > 1e-3
        _tree_close(custom, autodiff, 1e-10)


@pytest.mark.parametrize("cell_fn, layer_fn", [(SimpleRNNCell, SimpleRNN), (LSTMCell, LSTM),
                                               (GRUCell, GRU)])
def test_cell_in_a_user_scan_equals_the_layer(cell_fn, layer_fn):
    cell, layer = cell_fn(H), layer_fn(H, return_sequences=True, return_state=True)
    params = cell.init(KEY, D)
    x = jnp.asarray(_rng(9).normal(size=(2, T, D)), jnp.float32)
    carry, hs = jax.lax.scan(lambda c, x_t: cell.step(params, c, x_t), cell.initial_carry(2),
                             jnp.swapaxes(x, 0, 1))
    y, *states = _apply(layer, params, x)
    _close(jnp.swapaxes(hs, 0, 1), y)
    _tree_close(tuple(carry) if isinstance(carry, tuple) else (carry,), tuple(states))


# ------------------------------------------------------------------ seeds

def test_seed003_q17_rnn_worked_example_third_value_0855_is_a_seed_slip_for_0856():
    """Seed 003 Q17: x = [2, 3, 1], W_xh = 0.5, W_hh = 0.8, b = 0, h_0 = 0.

    Printed 0.762, 0.971, 0.855; exact tanh chain 0.761594, 0.970987, 0.855627, so the
    third printed value should round to 0.856 (SEED_EXAMPLES.md 003-Q17-e1).
    """
    layer = SimpleRNN(1, return_sequences=True)
    params = {"kernel": jnp.array([[0.5]]), "recurrent_kernel": jnp.array([[0.8]]),
              "bias": jnp.array([0.0])}
    h = np.asarray(_apply(layer, params, jnp.array([[[2.0], [3.0], [1.0]]])))[0, :, 0]
    _close(h, [0.761594, 0.970987, 0.855627], 2e-6)
    # as printed
    chex.assert_trees_all_close(h, np.asarray([0.762, 0.971, 0.855]), atol=2e-3, rtol=1e-7)
    assert round(float(h[2]), 3) == 0.856  # the seed's 0.855 is a rounding slip


def _count(layer, d):
    params, _ = jax.eval_shape(lambda k: layer.init(k, (1, 2, d)), KEY)
    return count_params(params)


def test_seed_parameter_counts():
    """003-Q17-e2 (SimpleRNN 91,392) and 004-S3-e1 (LSTM ~4H(H+D), GRU ~3H(H+D))."""
    assert _count(SimpleRNN(256), 100) == 256 * (100 + 256 + 1) == 91_392  # seed 003 Q17
    for hidden, d in [(256, 100), (7, 3)]:  # seed 004: ~4H(H+D), ~3H(H+D) plus biases
        assert _count(LSTM(hidden), d) == 4 * hidden * (hidden + d + 1)
        assert _count(GRU(hidden), d) == 3 * hidden * (hidden + d + 1)
        assert _count(LSTM(hidden, use_bias=False), d) == 4 * hidden * (hidden + d)
        assert _count(GRU(hidden, use_bias=False), d) == 3 * hidden * (hidden + d)
        assert _count(GRU(hidden, reset_after=True), d) == 3 * hidden * (hidden + d + 2)
    params, _ = LSTM(3).init(KEY, (1, 2, 2))
    chex.assert_trees_all_equal(params["bias"],
                                np.asarray([0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], np.float32))


def _grad_norm_by_step(layer, x):
    params, _ = layer.init(KEY, x.shape)
    g = jax.jit(jax.grad(lambda x: jnp.sum(_apply(layer, params, x))))(x)
    return np.linalg.norm(np.asarray(g), axis=(0, 2))  # ||dL/dx_t|| for each t


def test_gradient_vanishes_through_100_tanh_rnn_steps_but_not_through_an_open_lstm_cell():
    """Seed 004: ||dh_T/dh_1|| = ||prod dh_t/dh_{t-1}|| -> 0 for a tanh RNN; the LSTM cell
    state is additive (c_t = f c_{t-1} + ...), so with the forget gate open the gradient
    to x_0 survives. (With the default forget bias 1, f ≈ 0.73 and 0.73^100 vanishes too.)
    """
    x = jnp.asarray(_rng(10).normal(size=(2, 100, D)), jnp.float32)
    rnn = _grad_norm_by_step(SimpleRNN(H), x)
    forget_open = lambda k, s, dt=jnp.float32: jnp.zeros(s, dt).at[H:2 * H].set(5.0)  # noqa
    lstm = _grad_norm_by_step(LSTM(H, unit_forget_bias=False, bias_init=forget_open), x)
    assert rnn[0] / rnn[-1] < 1e-6  # underflows to 0 in float32
    assert lstm[0] / lstm[-1] > 1e-2  # 0.03-0.5 over seeds


def test_clip_by_global_norm_bounds_an_exploding_gradient():
    layer = SimpleRNN(H, activation="linear", recurrent_init=orthogonal(1.5))  # |eig| = 1.5
    x = jnp.asarray(_rng(11).normal(size=(2, 30, D)), jnp.float32)
    params, _ = layer.init(KEY, x.shape)
    grads = jax.grad(lambda p: jnp.sum(_apply(layer, p, x)))(params)
    assert optax.tree.norm(grads) > 1e4  # ~1.5^30
    clipped, _ = optax.clip_by_global_norm(1.0).update(grads, None)
    _close(optax.tree.norm(clipped), 1.0, 1e-5)
    _tree_close(clipped, jax.tree.map(lambda g: g / optax.tree.norm(grads), grads), 1e-5)


# ------------------------------------------------------------------ errors

def test_construction_errors_name_the_layer():
    with pytest.raises(ValueError, match="LSTM: units must be a positive int"):
        LSTM(0)
    with pytest.raises(ValueError, match=r"GRU: dropout must be a float in \[0, 1\)"):
        GRU(4, dropout=1.5)
    with pytest.raises(ValueError, match="SimpleRNN: activation must be one of"):
        SimpleRNN(4, activation="tanhh")
    with pytest.raises(ValueError, match="LSTM: implementation must be one of"):
        LSTM(4, implementation="cuda")  # "cudnn" is LSTM's GPU kernel (test_cudnn_lstm.py)
    with pytest.raises(ValueError, match="GRU: derivative must be one of"):
        GRU(4, derivative="cudnn")
    with pytest.raises(ValueError, match="SimpleRNN: unroll must be a positive int"):
        SimpleRNN(4, unroll=0)
    with pytest.raises(ValueError, match="Bidirectional: merge_mode must be one of"):
        Bidirectional(LSTM(4), merge_mode="max")


def test_bad_inputs_raise_errors_naming_the_layer_and_shapes():
    layer = LSTM(H)
    params, _ = layer.init(KEY, (2, T, D))
    x = jnp.ones((2, T, D))
    cases = [
        (ValueError, r"LSTM: input must have rank 3 \(N, T, features\), got shape \(5, 3\)",
         dict(x=jnp.ones((T, D)))),
        (ValueError, r"LSTM: input must have 3 features on the last axis, got shape \(2, 5, 4\)",
         dict(x=jnp.ones((2, T, 4)))),
        (TypeError, "LSTM: input must have a floating dtype, got int32",
         dict(x=jnp.ones((2, T, D), jnp.int32))),
        (ValueError, r"LSTM: initial_state must be \(h, c\) .*got 1 arrays",
         dict(initial_state=jnp.zeros((2, H)))),
        (ValueError, r"LSTM: initial_state must have shape \(N, units\) = \(2, 4\), got \(2, 5\)",
         dict(initial_state=(jnp.zeros((2, H)), jnp.zeros((2, 5))))),
        (ValueError, r"LSTM: lengths must be in \[0, T\] = \[0, 5\], got \[6\]",
         dict(lengths=jnp.asarray([6, 2]))),
        (ValueError, r"LSTM: lengths must be in \[0, T\] = \[0, 5\], got \[-1\]",
         dict(lengths=jnp.asarray([3, -1]))),
        (ValueError, r"LSTM: lengths must have shape \(N,\) = \(2,\), got \(3,\)",
         dict(lengths=jnp.asarray([1, 2, 3]))),
        (TypeError, "LSTM: lengths must be integers, got float32",
         dict(lengths=jnp.asarray([1.0, 2.0]))),
        (ValueError, r"LSTM: mask must have shape \(N, T\) = \(2, 5\), got \(2, 4\)",
         dict(mask=jnp.ones((2, 4), bool))),
        (TypeError, "LSTM: mask must be bool", dict(mask=jnp.ones((2, T)))),
        (ValueError, "LSTM: give the padding one way only, got mask= and lengths=",
         dict(mask=jnp.ones((2, T), bool), lengths=jnp.asarray([1, 2]))),
    ]
    for error, match, kw in cases:
        with pytest.raises(error, match=match):
            layer.apply(params, {}, kw.pop("x", x), **kw)
    with pytest.raises(ValueError, match=r"LSTM: input must have rank 3 .*got shape \(2, 3\)"):
        layer.init(KEY, (2, 3))
    with pytest.raises(ValueError, match="Bidirectional: initial_state must list the forward"):
        Bidirectional(LSTM(H)).apply({"forward": params, "backward": params},
                                     {"forward": {}, "backward": {}}, x,
                                     initial_state=(jnp.zeros((2, H)),) * 3)


def test_lengths_under_jit_are_not_checked_and_act_as_clipped():
    layer = GRU(H, return_state=True)
    params, _ = layer.init(KEY, (2, T, D))
    x = jnp.asarray(_rng(12).normal(size=(2, T, D)), jnp.float32)
    run = jax.jit(lambda lengths: _apply(layer, params, x, lengths=lengths))
    _tree_close(run(jnp.asarray([9, -3])), run(jnp.asarray([T, 0])), 0)
    _close(run(jnp.asarray([9, -3]))[0][1], np.zeros(H), 0)  # no valid step: the initial state
