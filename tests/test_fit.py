"""jl.fit with a TrainState (resumable, bit-identical), streams, callbacks, checkpoints;
jl.evaluate and jl.predict; jl.metrics. References: a hand-written optax loop following
fit's documented key and permutation rules, NumPy, and runs of other lengths."""

import csv
import functools

import chex
import jax
import numpy as np
import optax
import pytest

import jaxlayers as jl

KEY = jax.random.key(3)
N, D, C = 203, 6, 3  # 203 samples: batches of 32 leave a remainder of 11
CE = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)


def _data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D)).astype(np.float32)
    y = (np.argmax(x[:, :C], axis=1)).astype(np.int32)
    return x, y


def _model():
    return jl.serial(jl.Dense(16, activation="relu"), jl.Dropout(0.3), jl.Dense(C))


def _init(model=None):
    return (model or _model()).init(jax.random.key(0), (32, D))


def _optimizer():  # a schedule: restarting the optimizer would show
    return optax.adam(optax.exponential_decay(2e-2, 10, 0.7))


KW = dict(loss=CE, batch_size=32, verbose=False)


def _hand_loop(model, params, state, x, y, epochs, key, batch_size=32):
    """fit's documented semantics written out: epoch e's order is PCG64 seeded with the
    key's words and e, step t's dropout key is fold_in(fold_in(key, 1), t), the last
    n % batch_size samples are dropped; optax used directly."""
    opt = _optimizer()
    opt_state = opt.init(params)
    seed = [int(w) for w in np.ravel(jax.random.key_data(key))]

    def objective(p, s, xb, yb, k):
        out, s = model.apply(p, s, xb, key=k, training=True)
        return CE(out, yb), s

    @jax.jit
    def step(p, s, o, xb, yb, k):
        (_, s), g = jax.value_and_grad(objective, has_aux=True)(p, s, xb, yb, k)
        u, o = opt.update(g, o, p)
        return optax.apply_updates(p, u), s, o

    t = 0
    for e in range(epochs):
        order = np.random.default_rng(seed + [e]).permutation(len(x))
        for i in range(len(x) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            params, state, opt_state = step(params, state, opt_state, x[idx], y[idx],
                                            jax.random.fold_in(jax.random.fold_in(key, 1), t))
            t += 1
    return params, state, opt_state, t


def test_fit_follows_its_documented_order_keys_and_schedule():
    model, (x, y) = _model(), _data()
    params, state = _init(model)
    ts, history = jl.fit(model, (params, state), (x, y), optimizer=_optimizer(), epochs=4,
                         key=KEY, **KW)
    want_p, _, want_o, steps = _hand_loop(model, params, state, x, y, 4, KEY)
    assert ts.step == steps == 4 * (N // 32) and ts.epoch == 4
    chex.assert_trees_all_close(ts.params, want_p, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(ts.opt_state, want_o, rtol=1e-6, atol=1e-7)
    assert len(history["loss"]) == 4 and history.epoch == [0, 1, 2, 3]
    # the caller's arrays survive (fit copies before its donating steps)
    chex.assert_tree_all_finite(params)


def test_two_calls_of_5_epochs_equal_one_of_10_bit_for_bit():
    model, (x, y) = _model(), _data()
    start = _init(model)
    ts10, h10 = jl.fit(model, start, (x, y), optimizer=_optimizer(), epochs=10, key=KEY, **KW)
    ts5, h5 = jl.fit(model, start, (x, y), optimizer=_optimizer(), epochs=5, key=KEY, **KW)
    ts55, h55 = jl.fit(model, ts5, (x, y), optimizer=_optimizer(), epochs=5, **KW)
    chex.assert_trees_all_equal(ts55.params, ts10.params)
    chex.assert_trees_all_equal(ts55.opt_state, ts10.opt_state)
    assert (ts55.step, ts55.epoch) == (ts10.step, ts10.epoch) == (60, 10)
    assert h5["loss"] + h55["loss"] == h10["loss"]
    assert h55.epoch == [5, 6, 7, 8, 9]
    # a restarted optimizer (a fresh opt_state, the old bug) would differ
    restarted = ts5.replace(opt_state=_optimizer().init(ts5.params))
    other, _ = jl.fit(model, restarted, (x, y), optimizer=_optimizer(), epochs=5, **KW)
    assert not np.array_equal(other.params[0]["kernel"], ts10.params[0]["kernel"])


def test_train_state_is_a_pytree_and_start_arguments_are_checked():
    model = _model()
    params, state = _init(model)
    ts = jl.TrainState.create(params, state, optax.sgd(0.1), KEY)
    leaves = jax.tree.leaves(ts)
    assert len(leaves) == len(jax.tree.leaves((params, state))) + 3  # + key, step, epoch
    doubled = jax.tree.map(lambda a: a * 2 if isinstance(a, jax.Array) and
                           not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a, ts)
    chex.assert_trees_all_close(doubled.params, jax.tree.map(lambda a: 2 * a, params))
    x, y = _data()
    with pytest.raises(ValueError, match="carries its own key"):
        jl.fit(model, ts, (x, y), optimizer=optax.sgd(0.1), epochs=1, key=KEY, **KW)
    with pytest.raises(TypeError, match="needs key="):
        jl.fit(model, (params, state), (x, y), optimizer=optax.sgd(0.1), epochs=1, **KW)
    with pytest.raises(TypeError, match="TrainState or a pair"):
        jl.fit(model, params, (x, y), optimizer=optax.sgd(0.1), epochs=1, key=KEY, **KW)


def test_make_train_step_no_longer_deletes_the_callers_params():
    model, (x, y) = _model(), _data(32)
    params, state = _init(model)
    opt = optax.sgd(0.1)
    step = jl.train.make_train_step(model, CE, opt)
    new, *_ = step(params, state, opt.init(params), x, y, KEY)
    assert not params[0]["kernel"].is_deleted()
    assert not np.array_equal(new[0]["kernel"], params[0]["kernel"])


# --------------------------------------------------------------------------- streams

def _batches(x, y, size):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def test_a_stream_of_batches_trains_as_the_same_batches_in_memory_would():
    """A list of batches and a generator function give the hand loop's result on the same
    batches in the same order (shuffle=False for the arrays, whose last batch is kept)."""
    model, (x, y) = _model(), _data()
    start = _init(model)
    batches = _batches(x, y, 32)  # 6 full batches and one of 11
    ts_list, _ = jl.fit(model, start, batches, optimizer=_optimizer(), epochs=2, key=KEY,
                        loss=CE, verbose=False)
    ts_gen, _ = jl.fit(model, start, lambda: iter(batches), optimizer=_optimizer(), epochs=2,
                       key=KEY, loss=CE, verbose=False)
    ts_arr, _ = jl.fit(model, start, (x, y), optimizer=_optimizer(), epochs=2, key=KEY,
                       shuffle=False, drop_remainder=False, **KW)
    assert ts_list.step == ts_gen.step == ts_arr.step == 14
    chex.assert_trees_all_equal(ts_list.params, ts_gen.params)
    chex.assert_trees_all_close(ts_list.params, ts_arr.params, rtol=1e-6, atol=1e-7)
    # drop_remainder=True skips the short batch: 12 steps
    ts_drop, _ = jl.fit(model, start, batches, optimizer=_optimizer(), epochs=2, key=KEY,
                        loss=CE, verbose=False, drop_remainder=True)
    assert ts_drop.step == 12


def test_a_partial_last_batch_compiles_once_not_every_epoch():
    model, (x, y) = _model(), _data()
    traces = []

    def counting_loss(p, t):
        traces.append(p.shape)  # runs when the step is traced, not when it runs
        return CE(p, t)

    jl.fit(model, _init(model), _batches(x, y, 32), loss=counting_loss,
           optimizer=optax.sgd(0.1), epochs=4, key=KEY, metrics=("loss",), verbose=False)
    assert sorted({s[0] for s in traces}) == [11, 32]
    assert len(traces) == 2, traces  # one trace per batch shape, for 4 epochs


def test_an_endless_stream_needs_steps_per_epoch_and_an_iterator_continues():
    model, (x, y) = _model(), _data()
    seen = []

    def endless():
        i = 0
        while True:
            seen.append(i)
            j = (i * 32) % (N - 32)
            yield x[j:j + 32], y[j:j + 32]
            i += 1

    ts, history = jl.fit(model, _init(model), endless(), loss=CE, optimizer=optax.sgd(0.1),
                         epochs=3, key=KEY, steps_per_epoch=4, verbose=False)
    assert ts.step == 12 and len(history["loss"]) == 3
    assert seen == list(range(12))  # the iterator continued across epochs
    with pytest.raises(ValueError, match="ran out after 7 batches in epoch 0; "
                                         "steps_per_epoch is 9"):
        jl.fit(model, _init(model), _batches(x, y, 32), loss=CE, optimizer=optax.sgd(0.1),
               epochs=1, key=KEY, steps_per_epoch=9, verbose=False)


@pytest.mark.parametrize("case", ["empty", "exhausted", "changing", "larger", "not_pair",
                                  "batch_size", "too_big", "bad_batch_size", "strings"])
def test_bad_data_is_named(case):
    model, (x, y) = _model(), _data()
    kw = dict(loss=CE, optimizer=optax.sgd(0.1), epochs=2, key=KEY, verbose=False)
    start = _init(model)
    if case == "empty":
        data, match = (lambda: iter([])), "yielded no batch in epoch 0"
    elif case == "exhausted":
        data, match = iter(_batches(x, y, 64)), "yielded no batch in epoch 1.*iterator"
    elif case == "changing":
        data = [(x[:32], y[:32]), (x[:32, :4], y[:32])]
        match = r"batch 1 \(epoch 0\) has shapes and dtypes"
    elif case == "larger":
        data, match = [(x[:16], y[:16]), (x[:32], y[:32])], "batch 1 has 32 samples, more"
    elif case == "not_pair":
        data, match = [x[:32]], "data batch 0 must be a pair"
    elif case == "batch_size":
        data, match = _batches(x, y, 32), "batch_size is for in-memory"
        kw["batch_size"] = 32
    elif case == "too_big":
        data, match = (x, y), "batch_size 500 is larger than the 203 samples"
        kw["batch_size"] = 500
    elif case == "strings":
        data, match = (x, y.astype(str)), "data y must hold numbers.*got dtype <U"
        kw["batch_size"] = 32
    else:
        data, match = (x, y), "batch_size must be"
        kw["batch_size"] = 0
    with pytest.raises(ValueError, match=match):
        jl.fit(model, start, data, **kw)


# --------------------------------------------------------------------------- evaluate, predict

def _np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_evaluate_and_predict_match_one_full_batch_forward_in_numpy():
    model, (x, y) = _model(), _data()
    params, state = _init(model)
    params = jax.tree.map(lambda a: a + 0.3, params)
    w1, b1 = np.asarray(params[0]["kernel"]), np.asarray(params[0]["bias"])
    w2, b2 = np.asarray(params[2]["kernel"]), np.asarray(params[2]["bias"])
    logits = np.maximum(x @ w1 + b1, 0) @ w2 + b2  # dropout is off in inference
    got = jl.evaluate(model, params, state, (x, y), loss=CE, batch_size=50)
    assert set(got) == {"loss", "accuracy"}
    np.testing.assert_allclose(got["loss"], -np.mean(_np_log_softmax(logits)[np.arange(N), y]),
                               rtol=1e-5)
    np.testing.assert_allclose(got["accuracy"], np.mean(logits.argmax(1) == y), rtol=1e-6)
    top2 = jl.evaluate(model, params, state, _batches(x, y, 64),
                       metrics=("top_2_accuracy",))
    ranks = (logits > logits[np.arange(N), y][:, None]).sum(1)
    np.testing.assert_allclose(top2["top_2_accuracy"], np.mean(ranks < 2), rtol=1e-6)
    pred = jl.predict(model, params, state, x, batch_size=50)  # 203 = 4 x 50 + 3 (padded)
    assert isinstance(pred, np.ndarray) and pred.shape == (N, C)
    np.testing.assert_allclose(pred, logits, rtol=1e-5, atol=1e-5)
    streamed = jl.predict(model, params, state, [x[:100], x[100:]])
    np.testing.assert_allclose(streamed, logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="nothing to compute"):
        jl.evaluate(model, params, state, (x, y))


def test_metrics_follow_the_loss_and_match_numpy():
    assert jl.metrics.for_loss(jl.losses.mse) == ("loss",)
    assert jl.metrics.for_loss(CE) == ("loss", "accuracy")
    (_, bin_acc) = jl.metrics.for_loss(functools.partial(jl.losses.binary_crossentropy,
                                                         from_logits=True))
    assert bin_acc.keywords == {"threshold": 0.0}
    assert jl.metrics.for_loss(jl.losses.binary_crossentropy) == ("loss", "binary_accuracy")
    rng = np.random.default_rng(1)
    p, t = rng.standard_normal((40, 7)), rng.integers(0, 7, 40)
    for k in (1, 3, 5):
        ranks = (p > p[np.arange(40), t][:, None]).sum(1)
        chex.assert_trees_all_close(jl.metrics.top_k_accuracy(k)(p, t), np.mean(ranks < k),
                                    rtol=1e-6)
    chex.assert_trees_all_close(jl.metrics.accuracy(p, t), np.mean(p.argmax(1) == t),
                                rtol=1e-6)
    q = rng.standard_normal((40, 7))
    chex.assert_trees_all_close(jl.metrics.mae(p, q), np.mean(np.abs(p - q)), rtol=1e-6)
    chex.assert_trees_all_close(jl.metrics.mse(p, q), np.mean((p - q) ** 2), rtol=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        jl.metrics.top_k_accuracy(0)
    # regression: no accuracy by default in fit
    model = jl.serial(jl.Dense(1))
    x = rng.standard_normal((64, 3)).astype(np.float32)
    _, history = jl.fit(model, model.init(KEY, (8, 3)), (x, x[:, :1]), loss=jl.losses.mse,
                        optimizer=optax.sgd(0.1), epochs=1, batch_size=8, key=KEY,
                        verbose=False)
    assert list(history) == ["loss"]


# --------------------------------------------------------------------------- callbacks

class _Recorder(jl.callbacks.Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, logged, ts):
        self.calls.append(("train_begin", logged, ts.step))

    def on_epoch_begin(self, epoch, ts):
        self.calls.append(("epoch_begin", epoch, ts.step))

    def on_batch_end(self, step, logs, ts):
        self.calls.append(("batch_end", step, ts.step, sorted(logs)))

    def on_epoch_end(self, epoch, logs, ts):
        self.calls.append(("epoch_end", epoch, ts.epoch))

    def on_train_end(self, ts):
        self.calls.append(("train_end", ts.step))


def test_hooks_run_in_order_with_the_logs_and_the_train_state(tmp_path):
    model, (x, y) = _model(), _data(96)
    schedule = optax.exponential_decay(1e-2, 3, 0.5)
    rec = _Recorder()
    csv_path = tmp_path / "log.csv"
    ts, history = jl.fit(model, _init(model), (x, y), loss=CE, optimizer=optax.adam(schedule),
                         epochs=2, batch_size=32, key=KEY, validation_data=(x[:40], y[:40]),
                         callbacks=[rec, jl.callbacks.LearningRateLogger(schedule),
                                    jl.callbacks.CSVLogger(csv_path)], verbose=False)
    logged = ("loss", "accuracy", "val_loss", "val_accuracy")
    assert rec.calls[0] == ("train_begin", logged, 0)
    assert rec.calls[1] == ("epoch_begin", 0, 0)
    assert rec.calls[2:5] == [("batch_end", s, s, ["accuracy", "loss"]) for s in (1, 2, 3)]
    assert rec.calls[5] == ("epoch_end", 0, 1)
    assert rec.calls[-1] == ("train_end", 6)
    assert len(rec.calls) == 1 + 2 * 5 + 1
    # the learning-rate logger reads the schedule at the optimizer's step count
    np.testing.assert_allclose(history["lr"], [1e-2 * 0.5 ** (3 / 3), 1e-2 * 0.5 ** (6 / 3)],
                               rtol=1e-6)
    with csv_path.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", *logged, "lr"]
    assert [float(v) for v in rows[2][1:]] == [history[k][1] for k in (*logged, "lr")]


def test_early_stopping_restores_the_state_a_shorter_run_ends_with():
    """restore_best returns the TrainState of the best epoch: bit-identical to a run that
    stops right there (the reference: fit for best_epoch + 1 epochs)."""
    model, (x, y) = _model(), _data()
    start = _init(model)
    x_val, y_val = _data(64, seed=5)
    stop = jl.EarlyStopping(monitor="val_loss", patience=2, min_delta=0.0)
    ts, history = jl.fit(model, start, (x, y), optimizer=optax.adam(0.3), epochs=12, key=KEY,
                         validation_data=(x_val, y_val), callbacks=[stop], **KW)
    assert stop.best == min(history["val_loss"][:stop.best_epoch + 1])
    short, _ = jl.fit(model, start, (x, y), optimizer=optax.adam(0.3),
                      epochs=stop.best_epoch + 1, key=KEY, **KW)
    chex.assert_trees_all_equal(ts.params, short.params)
    assert ts.epoch == stop.best_epoch + 1


def test_resume_after_an_interruption_gives_the_uninterrupted_result(tmp_path):
    model, (x, y) = _model(), _data()
    start = _init(model)
    kw = dict(optimizer=_optimizer(), epochs=6, **KW)
    full, full_history = jl.fit(model, start, (x, y), key=KEY, **kw)

    class Interrupt(jl.callbacks.Callback):
        def on_epoch_end(self, epoch, logs, ts):
            if epoch == 2:
                raise KeyboardInterrupt

    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        jl.fit(model, start, (x, y), key=KEY, callbacks=[Interrupt()], checkpoint_dir=ckpt,
               keep=2, **kw)
    manager = jl.CheckpointManager(ckpt)
    assert manager.steps() == [6, 12]  # epochs 1 and 2 saved; the interrupted third not
    restored = manager.restore(like=jl.TrainState.create(*start, _optimizer(), KEY))
    assert (restored.step, restored.epoch) == (12, 2)
    resumed, history = jl.fit(model, start, (x, y), key=KEY, checkpoint_dir=ckpt, keep=2,
                              resume=True, **kw)
    chex.assert_trees_all_equal(resumed.params, full.params)
    chex.assert_trees_all_equal(resumed.opt_state, full.opt_state)
    assert history["loss"] == full_history["loss"][2:]
    assert manager.steps() == [30, 36]
    # already complete: resuming again runs nothing and returns the final state
    again, h = jl.fit(model, start, (x, y), key=KEY, checkpoint_dir=ckpt, resume=True, **kw)
    assert len(h["loss"]) == 0
    chex.assert_trees_all_equal(again.params, full.params)
    # a checkpoint of another model is refused, naming the first mismatched path
    other = jl.serial(jl.Dense(8), jl.Dense(C))
    with pytest.raises(ValueError, match="checkpoint 'params/2/bias', target 'params/1/bias'"):
        jl.fit(other, other.init(KEY, (32, D)), (x, y), key=KEY, checkpoint_dir=ckpt,
               resume=True, **kw)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        jl.fit(model, start, (x, y), key=KEY, resume=True, **kw)


def test_model_checkpoint_every_and_best_only(tmp_path):
    model, (x, y) = _model(), _data()
    x_val, y_val = _data(64, seed=5)
    every = jl.callbacks.ModelCheckpoint(tmp_path / "every", keep=None, every=2)
    best = jl.callbacks.ModelCheckpoint(tmp_path / "best", keep=None, monitor="val_loss")
    _, history = jl.fit(model, _init(model), (x, y), optimizer=optax.adam(0.3), epochs=5,
                        key=KEY, validation_data=(x_val, y_val), callbacks=[every, best], **KW)
    per_epoch = N // 32
    assert every.manager.steps() == [2 * per_epoch, 4 * per_epoch, 5 * per_epoch]
    v = history["val_loss"]
    improving = [e for e in range(5) if v[e] < min(v[:e], default=np.inf)]
    assert best.manager.steps() == [(e + 1) * per_epoch for e in improving]
    meta = jl.checkpoint.read_metadata(best.manager.path(best.manager.latest_step()))
    assert meta["metadata"]["logs"]["val_loss"] == min(v)


def test_progress_is_one_line_per_epoch_when_stderr_is_no_terminal(capsys):
    model, (x, y) = _model(), _data(64)
    jl.fit(model, _init(model), (x, y), loss=CE, optimizer=optax.sgd(0.1), epochs=2,
           batch_size=32, key=KEY, progress=True, verbose=True)
    out, err = capsys.readouterr()
    assert out.count("Epoch ") == 2 and "Epoch 2/2" in out and "accuracy" in out
    assert err == ""  # no bar drawn into a log file


def test_resuming_does_not_compile_the_train_step_again(tmp_path, caplog):
    """A restored TrainState has the placement fit's own arrays have: the step compiled
    for the first run serves the resumed one (a committed restore compiled it twice more)."""
    import logging

    model, (x, y) = _model(), _data()
    start = _init(model)
    kw = dict(optimizer=optax.sgd(0.1), key=KEY, checkpoint_dir=tmp_path, **KW)
    jl.fit(model, start, (x, y), epochs=1, **kw)
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        jl.fit(model, start, (x, y), epochs=3, resume=True, **kw)
    compiled = [r.getMessage() for r in caplog.records
                if "Compiling jit(train_step)" in r.getMessage()]
    assert compiled == [], compiled[:1]
