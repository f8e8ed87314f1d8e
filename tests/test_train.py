"""jaxlayers.train, jl.metrics, jl.fit, jl.EarlyStopping: the step against a hand-written
optax step, metrics against NumPy, fit's history, early stopping (tests/test_fit.py has
the TrainState, streams, callbacks and checkpoints)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlayers as jl
from jaxlayers import train

KEY = jax.random.key(0)
XENT = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)

rng = np.random.default_rng(0)
N, F, C = 40, 5, 3
X = rng.normal(size=(N, F)).astype(np.float32)
W_TRUE = rng.normal(size=(F, C)).astype(np.float32)
Y = np.argmax(X @ W_TRUE, axis=-1).astype(np.int32)          # linearly separable labels
X_VAL = rng.normal(size=(13, F)).astype(np.float32)           # 13: not a multiple of 8
Y_VAL = np.argmax(X_VAL @ W_TRUE, axis=-1).astype(np.int32)

# Shared by the fit tests, so that fit's compiled steps are reused (compile time dominates).
LINEAR = jl.Dense(C)
ADAM = optax.adam(0.05)


def _np(tree):
    return jax.tree.map(np.asarray, tree)


def _init(model, shape=(8, F), key=KEY):
    return model.init(key, shape)


def _fit(**kw):
    params, state = _init(LINEAR)
    args = dict(loss=XENT, optimizer=ADAM, epochs=3, batch_size=8, key=KEY, verbose=False)
    args.update(kw)
    data = args.pop("data", (X, Y))
    ts, history = jl.fit(LINEAR, (params, state), data, **args)
    return ts.params, ts.state, history.history


# --------------------------------------------------------------------------- train step

def _hand_step(model, opt):
    """The step as written by hand with jax and optax (same loss function: the step's
    machinery is under test, the loss has tests of its own)."""
    def loss_fn(params, state, x, y, key):
        logits, state = model.apply(params, state, x, key=key, training=True)
        return XENT(logits, y), state

    @jax.jit
    def step(params, state, opt_state, x, y, key):
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, x, y, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, loss

    return step


def test_train_step_matches_hand_written_optax_step_and_reduces_loss():
    model = jl.serial(jl.Dense(8, activation="tanh"), jl.Dense(C))
    opt = optax.adam(0.05)
    params, state = _init(model)
    ours = train.make_train_step(model, XENT, opt)
    hand = _hand_step(model, opt)
    a = jax.device_put((params, state, opt.init(params)), may_alias=False)
    b = jax.device_put((params, state, opt.init(params)), may_alias=False)
    losses = []
    for i in range(20):
        x, y = X[i % 5 * 8:(i % 5 + 1) * 8], Y[i % 5 * 8:(i % 5 + 1) * 8]
        *a, loss_a = ours(*a, x, y, None)
        *b, loss_b = hand(*b, x, y, None)
        assert float(loss_a) == float(loss_b)  # the same XLA program: bit for bit
        losses.append(float(loss_a))
    chex.assert_trees_all_equal(_np(a), _np(b))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_train_step_donates_its_inputs_only_when_asked():
    params, state = _init(LINEAR)
    opt = optax.sgd(0.1)
    opt_state = opt.init(params)
    train.make_train_step(LINEAR, XENT, opt)(params, state, opt_state, X[:8], Y[:8], None)
    assert not params["kernel"].is_deleted()  # the default keeps the caller's arrays
    donating = train.make_train_step(LINEAR, XENT, opt, donate=True)
    donating(params, state, opt_state, X[:8], Y[:8], None)
    assert params["kernel"].is_deleted()


class TrainStepWithAndWithoutJit(chex.TestCase):
    """chex.variants: make_train_step(jit=False) is the plain step function: nested in a
    jax.jit, and called eagerly, it gives what the jitted step gives."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_train_step_without_jit_is_the_plain_function(self):
        params, state = _init(LINEAR)
        opt = optax.sgd(0.1)
        step = self.variant(train.make_train_step(LINEAR, XENT, opt, jit=False))
        jitted = train.make_train_step(LINEAR, XENT, opt, donate=False)
        out = step(params, state, opt.init(params), X[:8], Y[:8], None)
        ref = jitted(params, state, opt.init(params), X[:8], Y[:8], None)
        chex.assert_trees_all_equal_shapes_and_dtypes(out, ref)
        chex.assert_trees_all_close(_np(out), _np(ref), rtol=1e-6)


def test_train_step_updates_batchnorm_state():
    model = jl.serial(jl.Dense(4), jl.BatchNorm(momentum=0.9), jl.Dense(C))
    params, state = _init(model)
    opt = optax.sgd(0.0)  # lr 0: only the state moves
    step = train.make_train_step(model, XENT, opt, donate=False)
    _, new_state, _, _ = step(params, state, opt.init(params), X[:8], Y[:8], None)
    h = X[:8] @ np.asarray(params[0]["kernel"]) + np.asarray(params[0]["bias"])
    chex.assert_trees_all_close(new_state[1]["mean"], 0.1 * h.mean(0), rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(new_state[1]["var"], 0.9 + 0.1 * h.var(0), rtol=1e-5)


def test_train_step_uses_the_key_for_dropout():
    model = jl.serial(jl.Dense(16), jl.Dropout(0.5), jl.Dense(C))
    params, state = _init(model)
    opt = optax.sgd(0.1)
    step = train.make_train_step(model, XENT, opt, donate=False)
    run = lambda k: float(step(params, state, opt.init(params), X[:8], Y[:8], k)[3])
    k1, k2 = jax.random.key(1), jax.random.key(2)
    assert run(k1) == run(k1)
    assert run(k1) != run(k2)
    with pytest.raises(ValueError, match="Dropout: training=True needs a PRNG key"):
        run(None)


def test_penalty_adds_lambda_sum_of_squared_kernels():
    model = jl.serial(jl.Dense(6, activation="relu"), jl.Dense(C))
    params, state = _init(model)
    lam = 0.01
    opt = optax.sgd(0.1)
    plain = train.make_train_step(model, XENT, opt, donate=False)
    reg = train.make_train_step(model, XENT, opt, penalty=jl.regularizers.l2(lam), donate=False)
    p0, *_, loss0 = plain(params, state, opt.init(params), X[:8], Y[:8], None)
    p1, *_, loss1 = reg(params, state, opt.init(params), X[:8], Y[:8], None)
    k = [np.asarray(params[i]["kernel"], np.float64) for i in (0, 1)]
    by_hand = lam * sum((w ** 2).sum() for w in k)  # λΣw², no ½, biases left out
    chex.assert_trees_all_close(float(loss1) - float(loss0), by_hand, rtol=1e-5)
    # the gradient of λΣw² is 2λw: SGD moves each kernel by a further -lr·2λ·w, biases not
    for i in (0, 1):
        chex.assert_trees_all_close(np.asarray(p1[i]["kernel"]) - np.asarray(p0[i]["kernel"]),
                                    -0.1 * 2 * lam * k[i], rtol=1e-4, atol=1e-7)
        chex.assert_trees_all_close(p1[i]["bias"], p0[i]["bias"], rtol=1e-6)


def test_clipping_through_optax_chain_bounds_the_update():
    params, state = _init(LINEAR)
    max_norm = 1e-3
    opt = optax.chain(optax.clip_by_global_norm(max_norm), optax.sgd(1.0))
    step = train.make_train_step(LINEAR, XENT, opt, donate=False)
    new, *_ = step(params, state, opt.init(params), X[:8], Y[:8], None)
    delta = jax.tree.map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b), new, params)
    norm = np.sqrt(sum((d ** 2).sum() for d in jax.tree.leaves(delta)))
    # g <- g * max_norm / ||g|| (the raw gradient norm here is far above 1e-3)
    chex.assert_trees_all_close(norm, max_norm, rtol=1e-4)


def _three_steps(opt, w0, grads):
    w, state = jnp.asarray(w0), opt.init(jnp.asarray(w0))
    for g in grads:
        updates, state = opt.update(jnp.asarray(g), state, w)
        w = optax.apply_updates(w, updates)
    return np.asarray(w, np.float64)


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam", "adam_eps_root"])
def test_optimizers_follow_the_formulas_the_module_docstring_states(name):
    w0 = np.array([0.5, -1.0, 2.0], np.float32)
    grads = [np.array(g, np.float32) for g in ([1.0, -2.0, 0.5], [0.5, 1.0, -1.0],
                                               [-0.2, 0.3, 0.1])]
    lr, w = 0.1, w0.astype(np.float64)
    if name == "sgd":
        opt = optax.sgd(lr)
        for g in grads:
            w = w - lr * g
    elif name == "momentum":  # seed 004: v <- γv + η∇L, w <- w - v
        opt, v = optax.sgd(lr, momentum=0.9), 0.0
        for g in grads:
            v = 0.9 * v + lr * g
            w = w - v
    elif name == "rmsprop":  # s <- 0.9 s + 0.1 g², w <- w - lr g / sqrt(s + ε)
        opt, s = optax.rmsprop(lr), 0.0
        for g in grads:
            s = 0.9 * s + 0.1 * g.astype(np.float64) ** 2
            w = w - lr * g / np.sqrt(s + 1e-8)
    else:  # seed 003 Q2 (ε outside the root) and seed 004's variant (ε inside)
        eps_root = name == "adam_eps_root"
        opt = optax.adam(lr, eps=0.0, eps_root=1e-8) if eps_root else optax.adam(lr)
        m = v = 0.0
        for t, g in enumerate(grads, start=1):
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g.astype(np.float64) ** 2
            m_hat, v_hat = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
            denom = np.sqrt(v_hat + 1e-8) if eps_root else np.sqrt(v_hat) + 1e-8
            w = w - lr * m_hat / denom
    chex.assert_trees_all_close(_three_steps(opt, w0, grads), w, rtol=1e-5, atol=1e-6)


def test_train_step_rejects_bad_arguments():
    with pytest.raises(TypeError, match="make_train_step: expected a jl.Layer"):
        train.make_train_step("dense", XENT, ADAM)
    with pytest.raises(TypeError, match="make_train_step: loss_fn must be a callable"):
        train.make_train_step(LINEAR, "mse", ADAM)
    with pytest.raises(TypeError, match="make_train_step: optimizer must be an optax"):
        train.make_train_step(LINEAR, XENT, 0.1)
    params, state = _init(LINEAR)
    per_example = functools.partial(XENT, reduction="none")
    step = train.make_train_step(LINEAR, per_example, ADAM, donate=False)
    with pytest.raises(ValueError, match="make_train_step: the loss must return a scalar"):
        step(params, state, ADAM.init(params), X[:8], Y[:8], None)


def test_eval_step_runs_in_inference_mode():
    model = jl.serial(jl.Dense(8), jl.Dropout(0.5), jl.Dense(C))
    params, state = _init(model)
    ev = train.make_eval_step(model, XENT, ("loss", "accuracy"))
    out = ev(params, state, X_VAL, Y_VAL)
    logits, _ = model.apply(params, state, X_VAL)  # training=False: dropout off
    chex.assert_trees_all_close(out["loss"], XENT(logits, Y_VAL), rtol=1e-6)
    chex.assert_trees_all_close(out["accuracy"], np.mean(np.argmax(logits, -1) == Y_VAL),
                                rtol=1e-7)
    with pytest.raises(ValueError, match="make_eval_step: unknown metric 'acc'"):
        train.make_eval_step(model, XENT, ("acc",))


# --------------------------------------------------------------------------- metrics

def test_accuracy_on_integer_labels_and_one_hot_targets():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [9.0, 0.0, 0.0]])
    labels = np.array([0, 1, 0, 1])
    assert float(jl.metrics.accuracy(logits, labels)) == 0.5
    assert float(jl.metrics.accuracy(logits, np.eye(3)[labels])) == 0.5
    assert float(jl.metrics.accuracy(logits.reshape(2, 2, 3), labels.reshape(2, 2))) == 0.5


def test_binary_accuracy_and_accuracy_errors():
    p, t = np.array([[0.9], [0.2], [0.6]]), np.array([[1.0], [1.0], [0.0]])
    assert float(jl.metrics.binary_accuracy(p, t)) == pytest.approx(1 / 3)
    assert float(jl.metrics.binary_accuracy(np.array([[2.0], [-1.0]]), np.array([[1.0], [0.0]]),
                                       threshold=0.0)) == 1.0
    with pytest.raises(ValueError, match="accuracy: .*binary_accuracy"):
        jl.metrics.accuracy(p, t)
    with pytest.raises(ValueError, match=r"accuracy: targets must be integer labels of shape "
                                         r"\(4,\)"):
        jl.metrics.accuracy(np.zeros((4, 3)), np.zeros((4, 1), np.int32))
    with pytest.raises(ValueError, match=r"binary_accuracy: .*same shape, got \(3, 1\) and "
                                         r"\(3,\)"):
        jl.metrics.binary_accuracy(p, t[:, 0])


# --------------------------------------------------------------------------- fit

def test_fit_history_lengths_and_learning():
    params, state, history = _fit(epochs=4, validation_data=(X_VAL, Y_VAL))
    assert list(history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert all(len(v) == 4 and all(isinstance(f, float) for f in v) for v in history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert history["accuracy"][-1] > 0.8
    # val_* is the full validation set in inference mode (13 = 8 + 5: a weighted mean)
    logits, _ = LINEAR.apply(params, state, X_VAL)
    chex.assert_trees_all_close(history["val_loss"][-1], XENT(logits, Y_VAL), rtol=1e-5)
    chex.assert_trees_all_close(history["val_accuracy"][-1],
                                np.mean(np.argmax(logits, -1) == Y_VAL), rtol=1e-6)


def test_fit_is_deterministic_in_the_key_and_shuffles_by_it():
    p1, _, h1 = _fit()
    p2, _, h2 = _fit()
    p3, _, h3 = _fit(key=jax.random.key(7))
    assert h1 == h2
    chex.assert_trees_all_equal(_np(p1), _np(p2))
    assert h1["loss"] != h3["loss"]
    _, _, h4 = _fit(shuffle=False)
    assert h4 != h1


def test_fit_accepts_a_legacy_uint32_key():
    _, _, h = _fit(key=jax.random.PRNGKey(0), epochs=1)
    assert len(h["loss"]) == 1


def test_fit_leaves_the_callers_arrays_intact():
    params, state = _init(LINEAR)
    before = _np(params)
    jl.fit(LINEAR, (params, state), (X, Y), loss=XENT, optimizer=ADAM, epochs=1,
           batch_size=8, key=KEY, verbose=False)
    chex.assert_trees_all_equal(_np(params), before)  # not donated


def test_fit_epoch_loss_is_the_mean_over_every_sample_seen():
    params, state = _init(LINEAR)
    logits, _ = LINEAR.apply(params, state, X)
    full = float(XENT(logits, Y))
    frozen = optax.sgd(0.0)  # params do not move: each batch's loss is on the same model
    fit = functools.partial(jl.fit, LINEAR, (params, state), (X, Y), loss=XENT,
                            optimizer=frozen, epochs=1, key=KEY, verbose=False)
    _, kept = fit(batch_size=16, drop_remainder=False)  # 16 + 16 + 8
    chex.assert_trees_all_close(kept["loss"][0], full, rtol=1e-5)
    _, big = fit(batch_size=1000, drop_remainder=False)  # clamped to one batch of 40
    chex.assert_trees_all_close(big["loss"][0], full, rtol=1e-5)


def test_fit_penalty_counts_in_loss_and_val_loss():
    lam = 0.5
    params, state = _init(LINEAR)
    pen = jl.regularizers.l2(lam)
    _, h = jl.fit(LINEAR, (params, state), (X, Y), loss=XENT, optimizer=optax.sgd(0.0),
                  epochs=1, batch_size=N, key=KEY, verbose=False, penalty=pen,
                  validation_data=(X_VAL, Y_VAL))
    logits, _ = LINEAR.apply(params, state, X_VAL)
    extra = lam * float(np.sum(np.asarray(params["kernel"], np.float64) ** 2))
    chex.assert_trees_all_close(h["val_loss"][0], float(XENT(logits, Y_VAL)) + extra, rtol=1e-5)


def test_fit_custom_metric_and_metrics_without_accuracy():
    def mean_logit(predictions, targets):
        del targets
        return jnp.mean(predictions)

    _, _, h = _fit(epochs=1, metrics=("loss", mean_logit), validation_data=(X_VAL, Y_VAL))
    assert list(h) == ["loss", "mean_logit", "val_loss", "val_mean_logit"]
    _, _, h = _fit(epochs=1, metrics=())
    assert list(h) == ["loss"]


def test_fit_trains_dropout_and_batchnorm_models():
    model = jl.serial(jl.Dense(8), jl.BatchNorm(), jl.Dropout(0.2), jl.Dense(C))
    params, state = _init(model)
    ts, h = jl.fit(model, (params, state), (X, Y), loss=XENT, optimizer=ADAM,
                   epochs=2, batch_size=8, key=KEY, verbose=False)
    new_state = ts.state
    assert not np.allclose(new_state[1]["mean"], state[1]["mean"])
    assert h["loss"][1] < h["loss"][0]


# The validation labels are the training labels permuted (class c -> c + 1): the better
# the model fits the training set, the worse it does on this validation set, so the best
# validation loss is after the first epoch and it only rises after that.
Y_ANTI = (np.argmax(X_VAL @ W_TRUE, axis=-1) + 1).astype(np.int32) % C


def test_early_stopping_stops_and_restores_the_best_params():
    stop = jl.EarlyStopping(monitor="val_loss", patience=2)
    params, state, h = _fit(epochs=20, validation_data=(X_VAL, Y_ANTI), callbacks=[stop])
    assert np.argmin(h["val_loss"]) == 0 and h["val_loss"][1] > h["val_loss"][0]
    assert len(h["loss"]) == 3  # the best epoch, then `patience` epochs without improvement
    assert (stop.best_epoch, stop.stopped_epoch) == (0, 2)
    assert stop.best == h["val_loss"][0]
    after_one, _, _ = _fit(epochs=1, validation_data=(X_VAL, Y_ANTI))
    chex.assert_trees_all_equal(_np(params), _np(after_one))
    # restore_best=False: the params of the last epoch run
    stop = jl.EarlyStopping(monitor="val_loss", patience=2, restore_best=False)
    last, _, _ = _fit(epochs=20, validation_data=(X_VAL, Y_ANTI), callbacks=[stop])
    after_three, _, _ = _fit(epochs=3, validation_data=(X_VAL, Y_ANTI))
    chex.assert_trees_all_equal(_np(last), _np(after_three))


def test_early_stopping_modes_and_patience():
    assert jl.EarlyStopping("val_accuracy").mode == "max"
    assert jl.EarlyStopping("val_loss").mode == "min"
    stop = jl.EarlyStopping("val_accuracy", patience=0)
    _, _, h = _fit(epochs=20, validation_data=(X_VAL, Y_ANTI), callbacks=[stop])
    assert len(h["loss"]) == stop.stopped_epoch + 1 < 20
    assert stop.best == max(h["val_accuracy"])
    # training loss keeps improving on separable data: no stop, the last epoch is best
    stop = jl.EarlyStopping("loss", patience=1, restore_best=True)
    _, _, h = _fit(epochs=4, callbacks=[stop])
    assert stop.stopped_epoch is None and stop.best_epoch == 3 and len(h["loss"]) == 4


def test_early_stopping_errors():
    with pytest.raises(ValueError, match=r"EarlyStopping: monitor 'val_loss' is not logged.*"
                                         r"validation_data"):
        _fit(epochs=1, callbacks=[jl.EarlyStopping()])
    with pytest.raises(ValueError, match="EarlyStopping: monitor 'val_f1' is not logged"):
        _fit(epochs=1, callbacks=[jl.EarlyStopping("val_f1")],
             validation_data=(X_VAL, Y_VAL))
    with pytest.raises(ValueError, match="EarlyStopping: patience must be an int >= 0"):
        jl.EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="EarlyStopping: mode must be one of"):
        jl.EarlyStopping(mode="down")
    with pytest.raises(ValueError, match="EarlyStopping: min_delta must be a number >= 0"):
        jl.EarlyStopping(min_delta=-0.1)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(data=(X, Y[:-1])), ValueError,
     "fit: x and y of data must have the same number of samples, got 40 and 39"),
    (dict(data=(X,)), ValueError, r"fit: data must be a pair \(x, y\)"),
    (dict(data=(X[:0], Y[:0])), ValueError, "fit: data is empty"),
    (dict(validation_data=(X_VAL, Y)), ValueError,
     "fit: x and y of validation_data must have the same number of samples, got 13 and 40"),
    (dict(batch_size=0), ValueError, "fit: batch_size must be an int >= 1, got 0"),
    (dict(batch_size=2.5), ValueError, "fit: batch_size must be an int >= 1"),
    (dict(epochs=-1), ValueError, "fit: epochs must be an int >= 0, got -1"),
    (dict(metrics=("loss", "acc")), ValueError, "fit: unknown metric 'acc'"),
    (dict(key=None), TypeError, "fit: a new run needs key="),
    (dict(key="seed"), TypeError, "fit: key must be a PRNG key"),
    (dict(optimizer="adam"), TypeError, "fit: optimizer must be an optax GradientTransformation"),
    (dict(loss="mse"), TypeError, "fit: loss must be a callable"),
    (dict(callbacks=[print]), TypeError, "fit: callbacks must be jl.callbacks.Callback objects"),
    (dict(loss=functools.partial(XENT, reduction="none")), ValueError,
     r"fit: the loss must return a scalar \(reduction='mean' or 'sum'\), got shape \(8,\)"),
])
def test_fit_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        _fit(**kwargs)


def test_fit_with_zero_epochs_returns_the_params_and_empty_history():
    params, _, h = _fit(epochs=0, validation_data=(X_VAL, Y_VAL))
    assert h == {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    chex.assert_trees_all_equal(_np(params), _np(_init(LINEAR)[0]))


def test_fit_progress_bar_line_fallback_and_silence(capsys, monkeypatch):
    import sys
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # a terminal
    _fit(epochs=1, verbose=True)
    out, err = capsys.readouterr()
    assert "Epoch 1/1" in err and "loss" in err and out == ""  # tqdm writes to stderr
    _fit(epochs=2, verbose=True, progress=False)
    out, err = capsys.readouterr()
    assert out.count("Epoch ") == 2 and "Epoch 2/2" in out and "loss" in out
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # tqdm not installed
    _fit(epochs=1, verbose=True)
    out, err = capsys.readouterr()
    assert "Epoch 1/1" in out and err == ""
    _fit(epochs=1, verbose=False)
    assert capsys.readouterr() == ("", "")
