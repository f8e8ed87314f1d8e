"""Regression tests: each one fails on a plausible one-line bug the rest of the suite misses.

Every test compares the library against an independent reference (NumPy, PyTorch CPU, or a
documented formula / key scheme), never against itself, and avoids the configurations that
hide bugs (rate 0.5, square shapes, default arguments, symmetric values). Each docstring
names the bug it guards against.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxlayers as jl
from jaxlayers.models._blocks import torch_batch_norm

KEY = jax.random.key(20261202)
RATE = 0.2          # never 0.5: a rate used as the keep probability must show
TOL = 0.03          # dropped fraction bound; every sample below has sigma <= 0.007


def _rng(seed):
    return np.random.default_rng(seed)


def _x(shape, seed=0, offset=1.5):
    """Values bounded away from 0, so that a zero in the output means "dropped"."""
    r = _rng(seed)
    return (offset + r.uniform(0.0, 1.0, shape)) * r.choice([-1.0, 1.0], shape)


def _check_inverted_dropout(x, y, rate):
    """Fraction of zeros within rate ± TOL, and kept entries equal to x / (1 - rate)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    dropped = y == 0.0
    assert abs(dropped.mean() - rate) < TOL, (dropped.mean(), rate)
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1.0 - rate), rtol=1e-6)


# ------------------------------------------------------------------ 1. dropout rates

def test_dropout_drops_rate_not_keep_prob():
    """Bug: jl.Dropout draws bernoulli(key, rate) (rate as the keep probability)."""
    x = _x((200, 300))
    y, _ = jl.Dropout(RATE).apply({}, {}, jnp.asarray(x, jnp.float32), key=KEY, training=True)
    chex.assert_shape(y, x.shape)
    _check_inverted_dropout(x, y, RATE)


@pytest.mark.parametrize("layer,shape", [
    (jl.SpatialDropout1D, (400, 3, 50)),
    (jl.SpatialDropout2D, (200, 3, 2, 60)),
    (jl.SpatialDropout3D, (200, 2, 3, 1, 60)),
])
def test_spatial_dropout_drops_rate_of_channels(layer, shape):
    """Bug: SpatialDropout1D/2D/3D draw their (N, 1.., C) mask with keep probability = rate."""
    x = _x(shape, seed=1)
    y, _ = layer(RATE).apply({}, {}, jnp.asarray(x, jnp.float32), key=KEY, training=True)
    y = np.asarray(y)
    chex.assert_shape(y, shape)
    _check_inverted_dropout(x, y, RATE)
    # whole feature maps drop together: per (example, channel) all zero or all kept
    spatial = tuple(range(1, len(shape) - 1))
    zeros = (y == 0).mean(axis=spatial)
    assert np.all((zeros == 0.0) | (zeros == 1.0))


def test_stochastic_depth_drops_rate_of_examples():
    """Bug: jl.StochasticDepth draws its per-example mask with keep probability = rate."""
    x = _x((5000, 3, 2), seed=2)
    y, _ = jl.StochasticDepth(RATE).apply({}, {}, jnp.asarray(x, jnp.float32), key=KEY,
                                          training=True)
    y = np.asarray(y)
    _check_inverted_dropout(x, y, RATE)
    zeros = (y == 0).mean(axis=(1, 2))
    assert np.all((zeros == 0.0) | (zeros == 1.0))


def _identity_rnn(units):
    """SimpleRNN params with kernel = recurrent_kernel = I, bias 0 (linear activation)."""
    eye = jnp.eye(units, dtype=jnp.float32)
    return {"kernel": eye, "recurrent_kernel": eye, "bias": jnp.zeros((units,), jnp.float32)}


def test_rnn_input_dropout_rate():
    """Bug: the recurrent layers' input `dropout=` mask drawn with keep probability = rate.

    Linear SimpleRNN, kernel I, recurrent kernel 0: y_t = x_t * m / (1 - rate), with one
    mask m (N, 1, D) shared by every step.
    """
    n, t, d = 400, 3, 50
    layer = jl.SimpleRNN(d, activation="linear", return_sequences=True, dropout=RATE)
    params = dict(_identity_rnn(d), recurrent_kernel=jnp.zeros((d, d), jnp.float32))
    x = _x((n, t, d), seed=3)
    y, _ = layer.apply(params, {}, jnp.asarray(x, jnp.float32), key=KEY, training=True)
    y = np.asarray(y)
    chex.assert_shape(y, (n, t, d))
    _check_inverted_dropout(x, y, RATE)
    assert np.all((y == 0).all(axis=1) | (y != 0).all(axis=1))  # one mask per sequence


def test_rnn_recurrent_dropout_rate():
    """Bug: `recurrent_dropout=` mask (N, units) drawn with keep probability = rate.

    Linear SimpleRNN, kernel = recurrent kernel = I, bias 0, x_0 = 1, x_1 = 0:
    h_0 = 1, h_1 = (h_0 * m_rec / (1 - rate)) @ I = m_rec / (1 - rate).
    """
    n, units = 400, 50
    layer = jl.SimpleRNN(units, activation="linear", return_sequences=True,
                         recurrent_dropout=RATE)
    x = np.zeros((n, 2, units), np.float32)
    x[:, 0] = 1.0
    y, _ = layer.apply(_identity_rnn(units), {}, jnp.asarray(x), key=KEY, training=True)
    y = np.asarray(y)
    np.testing.assert_array_equal(y[:, 0], 1.0)  # the carry itself is not dropped
    _check_inverted_dropout(np.ones((n, units)), y[:, 1], RATE)


def _np_simple_rnn(x, kernel, rec, bias, h0=None, in_keep=None, rec_scale=None):
    """NumPy Elman RNN: h_t = tanh(x_t @ W + (h_{t-1} * rec_scale) @ U + b); all h_t."""
    x = np.asarray(x, np.float64)
    n, t, _ = x.shape
    if in_keep is not None:
        x = x * in_keep
    h = np.zeros((n, kernel.shape[1])) if h0 is None else np.asarray(h0, np.float64)
    hs = []
    for s in range(t):
        hr = h if rec_scale is None else h * rec_scale
        h = np.tanh(x[:, s] @ kernel + hr @ rec + bias)
        hs.append(h)
    return np.stack(hs, axis=1)


def _rand_rnn_params(d, units, seed):
    r = _rng(seed)
    return {"kernel": r.normal(0, 0.6, (d, units)).astype(np.float32),
            "recurrent_kernel": r.normal(0, 0.4, (units, units)).astype(np.float32),
            "bias": r.normal(0, 0.3, (units,)).astype(np.float32)}


def test_rnn_dropout_masks_match_documented_key_scheme():
    """Bug: input / recurrent dropout masks drawn with the wrong keep probability (or key).

    The masks are rebuilt from the documented scheme: input keep = bernoulli(fold_in(key,
    0), 1 - rate, (N, 1, D)), recurrent keep = bernoulli(fold_in(key, 1), 1 - rr, (N, units));
    the recurrence itself is NumPy.
    """
    n, t, d, units, rate, rrate = 6, 5, 7, 4, 0.2, 0.3
    p = _rand_rnn_params(d, units, seed=4)
    x = _x((n, t, d), seed=5, offset=0.0)
    layer = jl.SimpleRNN(units, return_sequences=True, dropout=rate, recurrent_dropout=rrate)
    y, _ = layer.apply(jax.tree.map(jnp.asarray, p), {}, jnp.asarray(x, jnp.float32),
                       key=KEY, training=True)
    in_keep = np.asarray(jax.random.bernoulli(jax.random.fold_in(KEY, 0), 1 - rate,
                                              (n, 1, d)), np.float64) / (1 - rate)
    rec_keep = np.asarray(jax.random.bernoulli(jax.random.fold_in(KEY, 1), 1 - rrate,
                                               (n, units)), np.float64) / (1 - rrate)
    want = _np_simple_rnn(x, p["kernel"], p["recurrent_kernel"], p["bias"],
                          in_keep=in_keep, rec_scale=rec_keep)
    chex.assert_trees_all_close(np.asarray(y, np.float64), want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ 2. repeat keys

def test_repeat_gives_each_copy_its_own_key():
    """Bug: jl.repeat hands every copy the same key instead of fold_in(key, i)."""
    rate, n = 0.3, 3
    x = jnp.asarray(_x((100, 120), seed=6), jnp.float32)
    model = jl.repeat(jl.Dropout(rate), n)
    params, state = model.init(KEY, x.shape)
    y, _ = model.apply(params, state, x, key=KEY, training=True)
    want = x
    for i in range(n):
        want, _ = jl.Dropout(rate).apply({}, {}, want, key=jax.random.fold_in(KEY, i),
                                         training=True)
    chex.assert_trees_all_close(y, want, rtol=1e-6)
    # independent of Dropout itself: three independent masks keep 0.7^3, one shared 0.7
    kept = float(np.mean(np.asarray(y) != 0))
    assert abs(kept - (1 - rate) ** n) < TOL, kept
    nz = np.asarray(y) != 0
    np.testing.assert_allclose(np.asarray(y)[nz], np.asarray(x)[nz] / (1 - rate) ** n,
                               rtol=1e-5)


# ------------------------------------------------------------------ 3./4. Bidirectional

N_B, T_B, D_B, U_B = 3, 6, 4, 5


def _bidir_setup(return_sequences):
    rnn = jl.SimpleRNN(U_B, return_sequences=return_sequences)
    x = _x((N_B, T_B, D_B), seed=7, offset=0.0)
    pf, pb = _rand_rnn_params(D_B, U_B, 8), _rand_rnn_params(D_B, U_B, 9)
    params = {"forward": jax.tree.map(jnp.asarray, pf),
              "backward": jax.tree.map(jnp.asarray, pb)}
    return rnn, x, pf, pb, params


@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional_merge_modes(return_sequences):
    """Bug: Bidirectional merges "ave"/"mul" (or "sum"/"concat") wrong.

    The pair from merge_mode=None is checked against NumPy SimpleRNNs run forwards and on the
    reversed sequence (outputs re-reversed), and every merge mode against that pair.
    """
    rnn, x, pf, pb, params = _bidir_setup(return_sequences)
    state = {"forward": {}, "backward": {}}
    xj = jnp.asarray(x, jnp.float32)
    (y_f, y_b), _ = jl.Bidirectional(rnn, merge_mode=None).apply(params, state, xj)
    hf = _np_simple_rnn(x, pf["kernel"], pf["recurrent_kernel"], pf["bias"])
    hb = _np_simple_rnn(x[:, ::-1], pb["kernel"], pb["recurrent_kernel"], pb["bias"])
    want_f, want_b = (hf, hb[:, ::-1]) if return_sequences else (hf[:, -1], hb[:, -1])
    chex.assert_trees_all_close((np.asarray(y_f, np.float64), np.asarray(y_b, np.float64)),
                                (want_f, want_b), atol=1e-5)
    merged = {"concat": np.concatenate([want_f, want_b], axis=-1), "sum": want_f + want_b,
              "mul": want_f * want_b, "ave": (want_f + want_b) / 2}
    for mode, want in merged.items():
        y, _ = jl.Bidirectional(rnn, merge_mode=mode).apply(params, state, xj)
        chex.assert_shape(y, want.shape)
        chex.assert_trees_all_close(np.asarray(y, np.float64), want, atol=1e-5,
                                    custom_message=f"merge_mode={mode!r}")


def test_bidirectional_initial_state_order():
    """Bug: Bidirectional's initial_state=(h_f, h_b) given to the wrong directions."""
    rnn, x, pf, pb, params = _bidir_setup(True)
    r = _rng(10)
    h_f, h_b = r.normal(0, 1, (N_B, U_B)), r.normal(0, 1, (N_B, U_B)) + 2.0
    (y_f, y_b), _ = jl.Bidirectional(rnn, merge_mode=None).apply(
        params, {"forward": {}, "backward": {}}, jnp.asarray(x, jnp.float32),
        initial_state=(jnp.asarray(h_f, jnp.float32), jnp.asarray(h_b, jnp.float32)))
    want_f = _np_simple_rnn(x, pf["kernel"], pf["recurrent_kernel"], pf["bias"], h0=h_f)
    want_b = _np_simple_rnn(x[:, ::-1], pb["kernel"], pb["recurrent_kernel"], pb["bias"],
                            h0=h_b)[:, ::-1]
    chex.assert_trees_all_close((np.asarray(y_f, np.float64), np.asarray(y_b, np.float64)),
                                (want_f, want_b), atol=1e-5)


def test_bidirectional_lstm_initial_state_order():
    """Bug: Bidirectional's initial_state=(h_f, c_f, h_b, c_b) split or ordered wrong.

    Reference: the wrapped LSTM applied by hand on x with params["forward"] from (h_f, c_f)
    and on reversed x with params["backward"] from (h_b, c_b).
    """
    n, t, d, units = 2, 5, 3, 4
    lstm = jl.LSTM(units, return_sequences=True)
    bi = jl.Bidirectional(lstm, merge_mode=None)
    x = jnp.asarray(_x((n, t, d), seed=11, offset=0.0), jnp.float32)
    params, state = bi.init(KEY, x.shape)
    r = _rng(12)
    h_f, c_f, h_b, c_b = (jnp.asarray(r.normal(0, 1, (n, units)) + i, jnp.float32)
                          for i in range(4))
    (y_f, y_b), _ = bi.apply(params, state, x, initial_state=(h_f, c_f, h_b, c_b))
    want_f, _ = lstm.apply(params["forward"], {}, x, initial_state=(h_f, c_f))
    want_b, _ = lstm.apply(params["backward"], {}, jnp.flip(x, axis=1),
                           initial_state=(h_b, c_b))
    chex.assert_trees_all_close((y_f, y_b), (want_f, jnp.flip(want_b, axis=1)), atol=1e-6)


# ------------------------------------------------------------------ 5. transposed conv

@pytest.mark.parametrize("kernel_size,strides,output_padding", [
    ((3, 2), 2, 1),
    ((3, 4), (2, 3), (1, 2)),
])
def test_conv2d_transpose_valid_output_padding_matches_torch(kernel_size, strides,
                                                             output_padding):
    """Bug: Conv2DTranspose with padding="valid" ignores `output_padding`."""
    n, h, w, c, f = 2, 5, 4, 3, 6
    r = _rng(13)
    x = r.normal(0, 1, (n, h, w, c)).astype(np.float32)
    kernel = r.normal(0, 0.5, kernel_size + (c, f)).astype(np.float32)   # HWIO
    bias = r.normal(0, 0.5, (f,)).astype(np.float32)
    layer = jl.Conv2DTranspose(f, kernel_size, strides=strides, padding="valid",
                               output_padding=output_padding)
    y, _ = layer.apply({"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}, {},
                       jnp.asarray(x))
    want = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x).permute(0, 3, 1, 2),
        torch.from_numpy(kernel).permute(2, 3, 0, 1),   # (kh, kw, in, out) -> (in, out, kh, kw)
        torch.from_numpy(bias), stride=strides, padding=0, output_padding=output_padding,
    ).permute(0, 2, 3, 1).numpy()
    chex.assert_shape(y, want.shape)
    chex.assert_trees_all_close(np.asarray(y), want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ 6. zoo BatchNorm

def test_torch_batch_norm_running_stats_match_torch():
    """Bug: models/_blocks.py torch_batch_norm passes PyTorch's momentum (0.1) straight
    through instead of jaxlayers' 1 - 0.1 (the weight of the old value)."""
    n, h, w, c = 6, 5, 3, 4
    x = (_rng(14).normal(0, 1.0, (n, h, w, c)) * np.arange(1, c + 1) + 2.0).astype(np.float32)
    bn = torch_batch_norm()
    params, state = bn.init(KEY, x.shape)
    y, new_state = bn.apply(params, state, jnp.asarray(x), training=True)

    tbn = torch.nn.BatchNorm2d(c)  # momentum 0.1, eps 1e-5, running (0, 1), gamma 1, beta 0
    tbn.train()
    ty = tbn(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().permute(0, 2, 3, 1).numpy()
    chex.assert_trees_all_close(np.asarray(y), ty, atol=1e-5)
    chex.assert_trees_all_close(np.asarray(new_state["mean"]), tbn.running_mean.numpy(),
                                atol=1e-6)
    # PyTorch's running_var mixes in the UNBIASED batch variance, jaxlayers' the biased one
    # (documented in jl.BatchNorm): recover the unbiased batch variance from torch's running
    # value, rescale it by (m - 1) / m with m = N*H*W, and mix it in with the same momentum.
    m = n * h * w
    unbiased = (tbn.running_var.numpy().astype(np.float64) - 0.9 * 1.0) / 0.1
    want_var = 0.9 * 1.0 + 0.1 * unbiased * (m - 1) / m
    chex.assert_trees_all_close(np.asarray(new_state["var"], np.float64), want_var, atol=1e-5)


# ------------------------------------------------------------------ 7. fit's step keys

def _draw_recorder():
    """A layer whose state sums the jax.random.uniform(key) it sees while training."""
    def init(key, spec):
        del key
        return ({"w": jnp.ones((spec.shape[-1],), jnp.float32)},
                {"sum": jnp.zeros((), jnp.float32)})

    def apply(params, state, x, *, key=None, training=False):
        if training:
            state = {"sum": state["sum"] + jax.random.uniform(key)}
        return x * params["w"][None, :], state

    return jl.Layer(init, apply, name="DrawRecorder")


def test_fit_folds_the_step_into_the_dropout_key():
    """Bug: jl.fit reuses one dropout key every step instead of fold_in(fold_in(key, 1), t)."""
    model = _draw_recorder()
    r = _rng(15)
    x = r.normal(0, 1, (8, 3)).astype(np.float32)
    y = r.normal(0, 1, (8, 3)).astype(np.float32)
    params, state = model.init(KEY, x.shape)
    epochs, batch = 3, 4
    steps = epochs * (8 // batch)
    ts, _ = jl.fit(model, (params, state), (x, y), loss=jl.losses.mse,
                   optimizer=optax.sgd(0.01), epochs=epochs, batch_size=batch, key=KEY,
                   metrics=("loss",), shuffle=False, progress=False, verbose=False)
    state = ts.state
    step_key = jax.random.fold_in(KEY, 1)
    draws = [float(jax.random.uniform(jax.random.fold_in(step_key, t))) for t in range(steps)]
    np.testing.assert_allclose(float(state["sum"]), sum(draws), rtol=1e-5)


# ------------------------------------------------------------------ 8. EarlyStopping

def _drive(cb, monitor, values):
    cb.on_train_begin(("loss", monitor), None)
    return [cb.on_epoch_end(e, {"loss": 0.0, monitor: v}, None)
            for e, v in enumerate(values)]


def test_early_stopping_min_delta_mode_min():
    """Bug: EarlyStopping's min_delta with the wrong sign (value < best + min_delta)."""
    def cb():
        return jl.EarlyStopping(monitor="val_loss", patience=1, min_delta=0.05,
                                restore_best=False)
    # an improvement of 0.03 < min_delta does not count: stop at once (patience 1)
    small = cb()
    assert _drive(small, "val_loss", [1.0, 0.97]) == [False, True]
    assert small.best == 1.0 and small.best_epoch == 0 and small.stopped_epoch == 1
    # a slightly worse value does not count either
    worse = cb()
    assert _drive(worse, "val_loss", [1.0, 1.03]) == [False, True]
    assert worse.best == 1.0
    # an improvement of 0.1 > min_delta counts
    big = cb()
    assert _drive(big, "val_loss", [1.0, 0.9, 0.87]) == [False, False, True]
    assert big.best == 0.9 and big.best_epoch == 1 and big.stopped_epoch == 2


def test_early_stopping_min_delta_mode_max():
    """Bug: EarlyStopping's min_delta with the wrong sign in mode "max"."""
    def cb():
        return jl.EarlyStopping(monitor="val_accuracy", patience=1, mode="max",
                                min_delta=0.05, restore_best=False)
    small = cb()
    assert _drive(small, "val_accuracy", [0.6, 0.63]) == [False, True]
    assert small.best == 0.6 and small.stopped_epoch == 1
    worse = cb()
    assert _drive(worse, "val_accuracy", [0.6, 0.57]) == [False, True]
    assert worse.best == 0.6
    big = cb()
    assert _drive(big, "val_accuracy", [0.6, 0.7, 0.72]) == [False, False, True]
    assert big.best == 0.7 and big.best_epoch == 1 and big.stopped_epoch == 2


# ------------------------------------------------------------------ 9. Dense dtype

def _dense_inputs(seed):
    r = _rng(seed)
    return (r.normal(0, 1, (3, 5)).astype(np.float32),
            r.normal(0, 0.7, (5, 4)).astype(np.float32),
            r.normal(0, 0.5, (4,)).astype(np.float32))


def test_dense_bfloat16_compute_dtype_on_float32_input():
    """Bug: Dense(dtype=jnp.bfloat16) ignores dtype (computes in the input's float32)."""
    x, k, b = _dense_inputs(16)
    y, _ = jl.Dense(4, dtype=jnp.bfloat16).apply(
        {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)}, {}, jnp.asarray(x))
    assert y.dtype == jnp.bfloat16
    bf = lambda a: np.asarray(jnp.asarray(a, jnp.bfloat16), np.float64)  # noqa: E731
    want = bf(x) @ bf(k) + bf(b)          # bfloat16-rounded operands, exact arithmetic
    chex.assert_shape(y, (3, 4))
    # bfloat16 has 8 significand bits: relative error ~ 2^-8 per rounding
    np.testing.assert_allclose(np.asarray(y, np.float64), want, rtol=2e-2, atol=2e-2)


def test_dense_float32_compute_dtype_on_bfloat16_input():
    """Bug: Dense(dtype=jnp.float32) ignores dtype (computes in the input's bfloat16)."""
    x, k, b = _dense_inputs(17)
    xb = jnp.asarray(x, jnp.bfloat16)
    y, _ = jl.Dense(4, dtype=jnp.float32).apply(
        {"kernel": jnp.asarray(k), "bias": jnp.asarray(b)}, {}, xb)
    assert y.dtype == jnp.float32
    want = np.asarray(xb, np.float64) @ k.astype(np.float64) + b
    np.testing.assert_allclose(np.asarray(y, np.float64), want, rtol=1e-5, atol=1e-5)
