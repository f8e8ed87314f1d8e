"""Training: a jit-compiled train step, evaluation, metrics, the fit loop, early stopping.

    import functools, jax, optax, jaxlayers as jl
    loss = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)
    params, state, history = jl.fit(model, params, state, (x, y), loss=loss,
                                    optimizer=optax.adam(1e-3), epochs=20, batch_size=64,
                                    key=jax.random.key(0), validation_data=(x_val, y_val),
                                    callbacks=[jl.EarlyStopping(patience=3)])

Optimizers are optax `GradientTransformation`s, used as they are:

  optax.sgd(lr)                  w <- w - lr * g
  optax.sgd(lr, momentum=0.9)    t <- g + 0.9 t,  w <- w - lr * t.  With a constant lr this is
                                 seed 004's v <- γv + η∇L, w <- w - v (v = lr * t); the two
                                 differ only under a learning-rate schedule.
  optax.rmsprop(lr)              s <- 0.9 s + 0.1 g²,  w <- w - lr * g / sqrt(s + 1e-8)
                                 (ε inside the root by default; seed 004 prints the formula
                                 without the factor g, a typo).
  optax.adam(lr)                 seed 003 Q2: β1 0.9, β2 0.999, ε 1e-8, bias-corrected,
                                 w <- w - lr * m̂ / (sqrt(v̂) + ε). Seed 004's ε inside the
                                 root is optax.adam(lr, eps=0.0, eps_root=1e-8).
  clipping                       optax.chain(optax.clip_by_global_norm(max_norm),
                                             optax.adam(lr)):
                                 g <- g * max_norm / ||g|| when ||g|| > max_norm (seed 004), the
                                 norm taken over all leaves together; optax.clip(c) clips each
                                 entry to [-c, c] instead.
  L1 / L2 penalties              penalty=jl.regularizers.l2(1e-4) (or l1, l1_l2) adds λ·Σw²
                                 over the kernels to the loss, as Keras's kernel_regularizer.
                                 It is not optax.adamw's decoupled weight decay, which skips
                                 the gradient and Adam's scaling.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlayers._checks import check_int_at_least, check_non_negative_float, check_one_of
from jaxlayers.core import Layer, as_layer

__all__ = ["accuracy", "binary_accuracy", "make_train_step", "make_eval_step", "fit",
           "Callback", "EarlyStopping"]


# --------------------------------------------------------------------------- metrics

def accuracy(predictions, targets):
    """Fraction of examples whose arg-max class is the target class.

    Math: mean(argmax(predictions, -1) == t), t = targets (integer labels) or
    argmax(targets, -1) (one-hot or soft targets). Logits, probabilities or any scores
    work, as argmax is unchanged by softmax.

    Shapes: predictions (..., C); targets (...) integers, or (..., C) floats -> scalar.

    Raises:
      ValueError: a single-column prediction (use `binary_accuracy`) or shapes that match
        neither form.
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.ndim == 0 or predictions.shape[-1] < 2:
        raise ValueError(f"accuracy: predictions must have a class axis of size >= 2 last, "
                         f"got shape {predictions.shape}; for one sigmoid output use "
                         f"jl.train.binary_accuracy, for regression metrics=('loss',).")
    if jnp.issubdtype(targets.dtype, jnp.integer) and targets.shape == predictions.shape[:-1]:
        labels = targets
    elif targets.shape == predictions.shape:
        labels = jnp.argmax(targets, axis=-1)
    else:
        raise ValueError(f"accuracy: targets must be integer labels of shape "
                         f"{predictions.shape[:-1]} or one-hot of shape {predictions.shape}, "
                         f"got {targets.dtype} {targets.shape}.")
    return jnp.mean(jnp.argmax(predictions, axis=-1) == labels, dtype=jnp.float32)


def binary_accuracy(predictions, targets, *, threshold: float = 0.5):
    """Fraction of entries on the right side of `threshold`: mean((p > threshold) == (t > 0.5)).

    threshold 0.5 for sigmoid probabilities, 0.0 for logits.

    Shapes: predictions and targets of the same shape (e.g. (N, 1)) -> scalar.

    Raises:
      ValueError: shapes differ ((N,) against (N, 1) is an error, not a broadcast).
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.shape != targets.shape:
        raise ValueError(f"binary_accuracy: predictions and targets must have the same shape, "
                         f"got {predictions.shape} and {targets.shape}.")
    return jnp.mean((predictions > threshold) == (targets > 0.5), dtype=jnp.float32)


METRICS = {"accuracy": accuracy, "binary_accuracy": binary_accuracy}


def _metric_fns(where: str, metrics) -> dict[str, Callable]:
    """Name -> fn for the metrics other than "loss" (which the step computes itself)."""
    if isinstance(metrics, str) or callable(metrics):
        metrics = (metrics,)
    out = {}
    for m in metrics:
        if m == "loss":
            continue
        if isinstance(m, str):
            if m not in METRICS:
                raise ValueError(f"{where}: unknown metric {m!r}; use one of "
                                 f"{['loss'] + sorted(METRICS)} or a callable "
                                 f"metric(predictions, targets) -> scalar.")
            name, fn = m, METRICS[m]
        elif callable(m):
            name, fn = getattr(m, "__name__", type(m).__name__), m
        else:
            raise TypeError(f"{where}: a metric must be a name or a callable, got {m!r}.")
        if name in out or name == "loss":
            raise ValueError(f"{where}: metric name {name!r} appears twice.")
        out[name] = fn
    return out


# --------------------------------------------------------------------------- steps

def _check_model(where: str, model) -> Layer:
    return as_layer(where, model)


def _check_callable(where: str, name: str, fn, hint: str) -> None:
    if not callable(fn):
        raise TypeError(f"{where}: {name} must be a callable {hint}, got {fn!r}.")


def _check_optimizer(where: str, optimizer) -> None:
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"{where}: optimizer must be an optax GradientTransformation "
                        f"(e.g. optax.adam(1e-3)), got {optimizer!r}.")


def _scalar(where: str, value):
    if jnp.ndim(value) != 0:
        raise ValueError(f"{where}: the loss must return a scalar (reduction='mean' or 'sum'), "
                         f"got shape {jnp.shape(value)}.")
    return value


def _step_fn(model, loss_fn, optimizer, penalty, metric_fns=None, where="make_train_step"):
    """The un-jitted train step; given `metric_fns` (a dict, maybe empty) it also returns
    {name: metric(predictions, y)} of the batch, from the training-mode predictions."""
    with_metrics = metric_fns is not None

    def objective(params, state, x, y, key):
        predictions, new_state = model.apply(params, state, x, key=key, training=True)
        value = _scalar(where, loss_fn(predictions, y))
        if penalty is not None:
            value = value + penalty(params)
        return value, ((new_state, predictions) if with_metrics else new_state)

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(params, state, opt_state, x, y, key):
        (value, aux), grads = grad_fn(params, state, x, y, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        if not with_metrics:
            return params, aux, opt_state, value
        new_state, predictions = aux
        values = {name: fn(predictions, y) for name, fn in metric_fns.items()}
        return params, new_state, opt_state, value, values

    return step


def make_train_step(model, loss_fn: Callable, optimizer, *, penalty: Callable | None = None,
                    jit: bool = True, donate: bool = True) -> Callable:
    """One optimizer step, jit-compiled and pure:

        step(params, state, opt_state, x, y, key) -> (params, state, opt_state, loss)

    Math: (L, state') = loss_fn(model(params, state, x, key, training=True), y) + penalty(params),
          g = ∇_params L,  (u, opt_state') = optimizer.update(g, opt_state, params),
          params' = params + u.
    `loss` is the objective minimised (data loss plus penalty, as Keras reports it), before
    the update. The new layer state (BatchNorm running statistics) comes out of the forward
    pass through `value_and_grad(..., has_aux=True)`; nothing else is computed, so the step is
    what one writes by hand (benchmarks/ compares them).

    Args:
      model: a jl.Layer.
      loss_fn: loss(predictions, targets) -> scalar, e.g. jl.losses.mse or
        functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True).
      optimizer: an optax GradientTransformation (see the module docstring);
        opt_state = optimizer.init(params).
      penalty: optional penalty(params) -> scalar added to the loss (jl.regularizers.l2(λ)).
      jit: compile with jax.jit (False returns the plain function, to nest in your own
        jit, scan or pmap).
      donate: donate params, state and opt_state to the step, so XLA updates them in place:
        5-8% faster on the median step of the 784-256-128-10 MLP on XLA:CPU (2 cores;
        benchmarks/README.md), more for tiny models, neutral for large ones. The arrays passed in are then deleted: use the returned ones, or pass
        donate=False.

    Raises:
      TypeError: model, loss_fn, optimizer or penalty of the wrong kind.
      ValueError: (trace time) loss_fn returns a non-scalar.
    """
    _check_model("make_train_step", model)
    _check_callable("make_train_step", "loss_fn", loss_fn, "loss(predictions, targets)")
    _check_optimizer("make_train_step", optimizer)
    if penalty is not None:
        _check_callable("make_train_step", "penalty", penalty, "penalty(params) -> scalar")
    step = _step_fn(model, loss_fn, optimizer, penalty)
    if not jit:
        return step
    return jax.jit(step, donate_argnums=(0, 1, 2) if donate else ())


def _eval_fn(model, loss_fn, penalty, metric_fns, want_loss, where="make_eval_step"):
    def eval_step(params, state, x, y):
        predictions, _ = model.apply(params, state, x, key=None, training=False)
        values = {}
        if want_loss:
            values["loss"] = _scalar(where, loss_fn(predictions, y))
            if penalty is not None:
                values["loss"] = values["loss"] + penalty(params)
        values.update({name: fn(predictions, y) for name, fn in metric_fns.items()})
        return values

    return eval_step


def make_eval_step(model, loss_fn: Callable, metrics=("loss", "accuracy"), *,
                   penalty: Callable | None = None, jit: bool = True) -> Callable:
    """Metrics of one batch in inference mode: eval_step(params, state, x, y) -> {name: scalar}.

    The forward pass runs with training=False (dropout off, BatchNorm on running
    statistics). "loss" is loss_fn(predictions, y) (+ penalty(params) if given, as for
    training); the others are `metrics` entries: "accuracy", "binary_accuracy" or callables
    metric(predictions, targets) -> scalar, keyed by their __name__. Each value is the
    batch mean, so a data set's mean is the batch-size-weighted mean of the batches'.

    Raises:
      ValueError: an unknown metric name. TypeError: model or loss_fn of the wrong kind.
    """
    _check_model("make_eval_step", model)
    _check_callable("make_eval_step", "loss_fn", loss_fn, "loss(predictions, targets)")
    metrics = (metrics,) if isinstance(metrics, str) or callable(metrics) else tuple(metrics)
    eval_step = _eval_fn(model, loss_fn, penalty, _metric_fns("make_eval_step", metrics),
                         "loss" in metrics)
    return jax.jit(eval_step) if jit else eval_step


# --------------------------------------------------------------------------- callbacks

class Callback:
    """Base class for `fit` callbacks; every hook is optional and does nothing here.

    on_train_begin(logged): `logged` is the tuple of names `fit` records ("loss",
      "accuracy", "val_loss", ...), known before the first step.
    on_epoch_end(epoch, logs, params, state) -> bool: `epoch` counts from 0, `logs` maps
      each logged name to this epoch's float. Return True to stop training.
    on_train_end(params, state) -> (params, state): what `fit` returns.
    Arrays `fit` hands to a hook are donated by its next step: copy the ones you keep.
    """

    def on_train_begin(self, logged: tuple[str, ...]) -> None:
        del logged

    def on_epoch_end(self, epoch: int, logs: dict[str, float], params, state) -> bool:
        del epoch, logs, params, state
        return False

    def on_train_end(self, params, state):
        return params, state


class EarlyStopping(Callback):
    """Stop `fit` when a logged value stops improving; optionally return the best params.

    An epoch improves when  value < best - min_delta  (mode "min") or
    value > best + min_delta  (mode "max"). Training stops once `patience` epochs in a row
    have not improved (patience 0 and 1 both stop at the first that does not, as in Keras).
    A NaN never improves.

    Args:
      monitor: a name `fit` logs: "val_loss" (needs validation_data), "val_accuracy",
        "loss", "accuracy", ...
      patience: epochs without improvement to wait, an int >= 0.
      mode: "min", "max", or "auto": "max" when the name contains "acc", else "min".
      min_delta: the smallest change that counts as an improvement, >= 0.
      restore_best: `fit` returns the params and state of the best epoch (copied when
        it happens), whether or not training stopped early, as Keras 3's
        restore_best_weights.

    After `fit`: `best` (the best value), `best_epoch` (its index in the history lists) and
    `stopped_epoch` (index of the epoch after which training stopped, or None).

    Raises:
      ValueError: bad patience, mode or min_delta (construction); a monitor that `fit`
        does not log (at the start of `fit`, before any step).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, mode: str = "auto",
                 min_delta: float = 0.0, restore_best: bool = True):
        if not isinstance(monitor, str):
            raise ValueError(f"EarlyStopping: monitor must be a logged name such as "
                             f"'val_loss', got {monitor!r}.")
        patience = check_int_at_least("EarlyStopping", "patience", patience, 0)
        check_one_of("EarlyStopping", "mode", mode, ("auto", "min", "max"))
        min_delta = check_non_negative_float("EarlyStopping", "min_delta", min_delta)
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode = mode if mode != "auto" else ("max" if "acc" in monitor else "min")
        self.restore_best = restore_best
        self._reset()

    def _reset(self):
        self.best, self.best_epoch, self.stopped_epoch = None, None, None
        self._wait, self._best_params = 0, None

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, logged):
        self._reset()
        if self.monitor not in logged:
            hint = " (pass validation_data to fit)" if self.monitor.startswith("val_") else ""
            raise ValueError(f"EarlyStopping: monitor {self.monitor!r} is not logged by fit; "
                             f"it logs {list(logged)}{hint}.")

    def on_epoch_end(self, epoch, logs, params, state):
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best:  # copy: the next train step donates these buffers
                self._best_params = _copy((params, state))
            return False
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, params, state):
        if self.restore_best and self._best_params is not None:
            params, state = self._best_params
        self._best_params = None
        return params, state

    def __repr__(self) -> str:
        best = "" if self.best is None else \
            f", best {self.best:.6g} at epoch {self.best_epoch + 1}"
        return f"EarlyStopping(monitor={self.monitor!r}{best})"


# --------------------------------------------------------------------------- fit

def _host_data(where: str, name: str, data):
    """(x, y) as host numpy pytrees with JAX's canonical dtypes, and the sample count."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        size = f" of length {len(data)}" if isinstance(data, (tuple, list)) else ""
        raise ValueError(f"{where}: {name} must be a pair (x, y) of arrays, got "
                         f"{type(data).__name__}{size}.")
    host = jax.tree.map(lambda a: np.asarray(
        a, dtype=jax.dtypes.canonicalize_dtype(np.asarray(a).dtype)), tuple(data))
    counts = []
    for part, tree in zip("xy", host):
        leaves = jax.tree.leaves(tree)
        if not leaves or any(a.ndim == 0 for a in leaves):
            raise ValueError(f"{where}: {name} {part} must be an array (or a tuple of arrays, "
                             f"one per input) with the samples on axis 0, got shapes "
                             f"{jax.tree.map(np.shape, tree)}; turn a nested list into an "
                             f"array with np.asarray.")
        sizes = {a.shape[0] for a in leaves}
        if len(sizes) != 1:
            raise ValueError(f"{where}: the arrays of {name} {part} must have the same number "
                             f"of samples, got {sorted(sizes)}.")
        counts.append(sizes.pop())
    if counts[0] != counts[1]:
        raise ValueError(f"{where}: x and y of {name} must have the same number of samples, "
                         f"got {counts[0]} and {counts[1]}.")
    if counts[0] == 0:
        raise ValueError(f"{where}: {name} is empty.")
    return host[0], host[1], counts[0]


def _copy(tree):
    """Fresh buffers (no compilation): what `fit` keeps must survive the donating steps."""
    return jax.device_put(tree, may_alias=False)


def _take(tree, idx):
    return tree[idx] if isinstance(tree, np.ndarray) else jax.tree.map(lambda a: a[idx], tree)


def _epoch_order(seed: list[int], epoch: int, n: int, shuffle: bool) -> np.ndarray:
    """The epoch's sample order: a permutation drawn by NumPy's PCG64 seeded with the key's
    words and the epoch (on the host: jax.random.permutation compiled for ~1 s per n)."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng(seed + [epoch]).permutation(n)


def _add(sums, values, y):
    """sums + batch_size * values: running sums kept on the device, fetched once an epoch
    (fetching a scalar per step cost ~25 µs, a quarter of a small model's step)."""
    count = jax.tree.leaves(y)[0].shape[0]
    for name, v in values.items():
        if jnp.ndim(v) != 0:
            raise ValueError(f"fit: metric {name!r} must return a scalar, got shape "
                             f"{jnp.shape(v)}.")
    return {k: sums[k] + jnp.asarray(values[k], jnp.float32) * count for k in sums}


def _zeros(names):
    return {k: np.zeros((), np.float32) for k in names}


def _means(sums, count: int, names) -> dict[str, float]:
    host = jax.device_get(sums)
    return {k: float(host[k]) / count for k in names}


def _evaluate(eval_sums, params, state, x, y, n, batch_size, names):
    sums = _zeros(names)
    for i in range(0, n, batch_size):
        sums = eval_sums(params, state, sums, _take(x, slice(i, i + batch_size)),
                         _take(y, slice(i, i + batch_size)))
    return _means(sums, n, names)


def _format(logs: dict[str, float]) -> str:
    return " - ".join(f"{k} {v:.4f}" for k, v in logs.items())


class _Progress:
    """A tqdm bar per epoch when asked for and installed, else one printed line per epoch."""

    def __init__(self, verbose: bool, progress: bool, epochs: int, names):
        self.verbose, self.epochs, self.names, self.tqdm = verbose, epochs, names, None
        if verbose and progress:
            try:
                from tqdm import tqdm  # optional: the 'examples' extra
                self.tqdm = tqdm
            except ImportError:
                pass

    def start(self, epoch: int, steps: int):
        self.t0 = self.last = time.perf_counter()
        self.bar = None
        if self.tqdm is not None:
            self.bar = self.tqdm(total=steps, desc=f"Epoch {epoch + 1}/{self.epochs}",
                                 unit="step", leave=True, dynamic_ncols=True,
                                 smoothing=0)  # the average rate: steps are async

    def step(self, sums, count: int):
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.last > 0.5:  # fetching the sums syncs with the device: not every step
            self.last = now
            self.bar.set_postfix_str(_format(_means(sums, count, self.names)),
                                     refresh=False)

    def end(self, epoch: int, logs: dict[str, float]):
        if self.bar is not None:
            self.bar.set_postfix_str(_format(logs), refresh=False)
            self.bar.close()
        elif self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs} - {time.perf_counter() - self.t0:.1f}s - "
                  f"{_format(logs)}", flush=True)


@functools.lru_cache(maxsize=8)
def _fit_fns_cached(model, loss, optimizer, penalty, metric_items):
    metric_fns = dict(metric_items)
    raw_step = _step_fn(model, loss, optimizer, penalty, metric_fns, "fit")
    raw_eval = _eval_fn(model, loss, penalty, metric_fns, True, "fit")

    def train_step(params, state, opt_state, sums, x, y, key, step):
        # the step's key is folded in here, inside the compiled step, not dispatched per step
        params, state, opt_state, value, values = raw_step(
            params, state, opt_state, x, y, jax.random.fold_in(key, step))
        return params, state, opt_state, _add(sums, {"loss": value, **values}, y)

    def eval_sums(params, state, sums, x, y):
        return _add(sums, raw_eval(params, state, x, y), y)

    return (jax.jit(train_step, donate_argnums=(0, 1, 2, 3)),
            jax.jit(eval_sums, donate_argnums=(2,)))


def _fit_fns(*args):
    """fit's jitted (train_step, eval_step); kept for the same model, loss, optimizer,
    penalty and metrics, so calling fit again does not compile again."""
    try:
        hash(args)
    except TypeError:  # an unhashable callable: build afresh
        return _fit_fns_cached.__wrapped__(*args)
    return _fit_fns_cached(*args)


def _typed_key(where: str, key):
    if key is None or not hasattr(key, "dtype"):
        raise TypeError(f"{where}: key must be a PRNG key such as jax.random.key(0), got {key!r}.")
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)  # a legacy uint32 jax.random.PRNGKey


def fit(model, params, state, data, *, loss: Callable, optimizer, epochs: int,
        batch_size: int, key, validation_data=None, metrics: Iterable = ("loss", "accuracy"),
        penalty: Callable | None = None, callbacks: Iterable[Callback] = (),
        shuffle: bool = True, drop_remainder: bool = True, progress: bool = True,
        verbose: bool = True):
    """Train `model` with mini-batches for `epochs` epochs: returns (params, state, history).

    Each epoch visits the training samples in a fresh random order (NumPy's PCG64 seeded
    with the words of `key` and the epoch number, drawn on the host so that no permutation
    has to be compiled) and runs one jit-compiled, donating train step per batch (as
    `make_train_step`, plus the metrics of the batch). Step t of the run (counting across
    epochs) gets the key fold_in(fold_in(key, 1), t) for dropout. The same key gives the
    same order, masks and history, bit for bit.

    Batches: `batch_size` samples each (clamped to n, as Keras). With drop_remainder=True
    (the default) the last n % batch_size samples of each epoch's permutation are skipped:
    every step has one shape and compiles once, and as the order changes every epoch no
    sample is left out for long. drop_remainder=False keeps the short batch, at the cost of
    a second compilation. Evaluation uses every sample, in batches of `batch_size`.

    history: {"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]},
    one float per epoch. "loss" and the training metrics are means over the epoch's batches
    in training mode (dropout on), as Keras reports them, and "loss" includes the penalty;
    "val_*" are computed after the epoch in inference mode (penalty included in val_loss).

    Args:
      model: a jl.Layer; params, state: from model.init (left intact: fit copies them).
      data: (x, y), arrays (or pytrees of arrays) with the samples on axis 0.
      loss: loss(predictions, targets) -> scalar, e.g. jl.losses.mse.
      optimizer: an optax GradientTransformation (module docstring: sgd, momentum,
        rmsprop, adam, clipping with optax.chain). A fresh optimizer.init(params) is used.
      epochs: number of passes over the data, >= 0. batch_size: samples per step, >= 1.
      key: a PRNG key (jax.random.key(seed)) driving shuffling and dropout.
      validation_data: optional (x_val, y_val), evaluated after each epoch.
      metrics: names from "loss", "accuracy", "binary_accuracy", or callables
        metric(predictions, targets) -> scalar; "loss" is always logged.
      penalty: optional penalty(params) -> scalar added to the loss (jl.regularizers).
      callbacks: `Callback`s such as `EarlyStopping`.
      shuffle: shuffle each epoch (False: the data's order, still batched).
      drop_remainder: see Batches above.
      progress: a tqdm progress bar per epoch (tqdm is in the 'examples' extra); without
        it, or with progress=False, one line per epoch is printed.
      verbose: False prints nothing.

    Raises:
      ValueError: x and y of different lengths, empty data, batch_size < 1, epochs < 0,
        an unknown metric, a callback's monitor that is not logged.
      TypeError: model, loss, optimizer, key or a callback of the wrong kind.
    """
    where = "fit"
    _check_model(where, model)
    _check_callable(where, "loss", loss, "loss(predictions, targets) -> scalar, e.g. "
                    "jl.losses.mse")
    _check_optimizer(where, optimizer)
    if penalty is not None:
        _check_callable(where, "penalty", penalty, "penalty(params) -> scalar")
    epochs = check_int_at_least(where, "epochs", epochs, 0)
    batch_size = check_int_at_least(where, "batch_size", batch_size, 1)
    key = _typed_key(where, key)
    x, y, n = _host_data(where, "data", data)
    val = None if validation_data is None else _host_data(where, "validation_data",
                                                          validation_data)
    metrics = (metrics,) if isinstance(metrics, str) or callable(metrics) else tuple(metrics)
    metric_fns = _metric_fns(where, metrics)
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not all(callable(getattr(cb, hook, None)) for hook in
                   ("on_train_begin", "on_epoch_end", "on_train_end")):
            raise TypeError(f"fit: callbacks must be jl.train.Callback objects (e.g. "
                            f"jl.EarlyStopping()), got {cb!r}.")

    batch_size = min(batch_size, n)
    steps = n // batch_size if drop_remainder else -(-n // batch_size)
    names = ("loss",) + tuple(metric_fns)
    logged = names + (tuple(f"val_{k}" for k in names) if val is not None else ())
    history = {k: [] for k in logged}

    train_step, eval_step = _fit_fns(model, loss, optimizer, penalty, tuple(metric_fns.items()))
    # Copies: the step donates its inputs, and the caller's arrays must survive fit (an
    # optimizer state may also hold the params themselves, as optax.lookahead's does).
    params, state, opt_state = _copy((params, state, optimizer.init(params)))
    seed = [int(w) for w in np.ravel(jax.random.key_data(key))]
    step_key = jax.random.fold_in(key, 1)  # dropout keys; the key's words seed the order
    for cb in callbacks:
        cb.on_train_begin(logged)

    bar = _Progress(verbose, progress, epochs, names)
    for epoch in range(epochs):
        order = _epoch_order(seed, epoch, n, shuffle)
        bar.start(epoch, steps)
        sums, seen = _zeros(names), 0
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            params, state, opt_state, sums = train_step(
                params, state, opt_state, sums, _take(x, idx), _take(y, idx), step_key,
                epoch * steps + i)
            seen += len(idx)
            bar.step(sums, seen)
        logs = _means(sums, seen, names)
        if val is not None:
            val_logs = _evaluate(eval_step, params, state, *val, batch_size, names)
            logs.update({f"val_{k}": val_logs[k] for k in names})
        for k in logged:
            history[k].append(logs[k])
        bar.end(epoch, logs)
        stops = [cb for cb in callbacks if cb.on_epoch_end(epoch, dict(logs), params, state)]
        if stops:
            if verbose:
                print(f"Stopped after epoch {epoch + 1}/{epochs}: "
                      f"{', '.join(map(repr, stops))}.", flush=True)
            break
    for cb in callbacks:
        params, state = cb.on_train_end(params, state)
    return params, state, history
