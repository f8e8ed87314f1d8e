"""The training loop `fit`, and batched, compiled `evaluate` and `predict`.

    import functools, jax, optax, jaxlayers as jl
    loss = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)
    ts, history = jl.fit(model, (params, state), (x, y), loss=loss,
                         optimizer=optax.adam(1e-3), epochs=20, batch_size=64,
                         key=jax.random.key(0), validation_data=(x_val, y_val),
                         callbacks=[jl.EarlyStopping(patience=3)])
    ts, history = jl.fit(model, ts, (x, y), loss=loss, optimizer=optax.adam(1e-3),
                         epochs=20, batch_size=64)       # 20 more epochs, same run
    scores = jl.evaluate(model, ts.params, ts.state, (x_test, y_test), loss=loss)

Data is either in memory, a pair `(x, y)` of arrays (or of pytrees of arrays, one per
input) with the samples on axis 0, which fit shuffles and batches; or a stream: any other
iterable of `(x, y)` batches (a list, a generator, a data loader yielding NumPy batches),
or a zero-argument callable returning a fresh one each epoch.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlayers import distributed
from jaxlayers import metrics as metrics_lib
from jaxlayers._checks import check_int_at_least
from jaxlayers.callbacks import Callback, History, ModelCheckpoint, copy_tree
from jaxlayers.precision import DynamicLossScale
from jaxlayers.train import (TrainState, check_callable, check_model, check_optimizer,
                             eval_fn, step_fn, typed_key)

__all__ = ["fit", "evaluate", "predict"]

_HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")


# --------------------------------------------------------------------------- data

def _canonical(a):
    a = np.asarray(a)
    return a.astype(jax.dtypes.canonicalize_dtype(a.dtype), copy=False)


def _samples(where: str, what: str, tree) -> int:
    leaves = jax.tree.leaves(tree)
    if not leaves or any(a.ndim == 0 for a in leaves):
        raise ValueError(f"{where}: {what} must be an array (or a tuple of arrays, one per "
                         f"input) with the samples on axis 0, got shapes "
                         f"{jax.tree.map(np.shape, tree)}; turn a nested list into an "
                         f"array with np.asarray.")
    bad = [a.dtype for a in leaves if a.dtype.kind in "OUSMm"]
    if bad:
        raise ValueError(f"{where}: {what} must hold numbers (bool, int or float arrays), "
                         f"got dtype {bad[0]}; encode text or objects as numbers first.")
    sizes = {a.shape[0] for a in leaves}
    if len(sizes) != 1:
        raise ValueError(f"{where}: the arrays of {what} must have the same number of "
                         f"samples, got {sorted(sizes)}.")
    return sizes.pop()


def _pair(where: str, what: str, batch):
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        size = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
        raise ValueError(f"{where}: {what} must be a pair (x, y), got "
                         f"{type(batch).__name__}{size}.")
    x, y = (jax.tree.map(_canonical, part) for part in batch)
    nx, ny = _samples(where, f"{what} x", x), _samples(where, f"{what} y", y)
    if nx != ny:
        raise ValueError(f"{where}: x and y of {what} must have the same number of samples, "
                         f"got {nx} and {ny}.")
    return x, y, nx


def _take(tree, idx):
    return jax.tree.map(lambda a: a[idx], tree)


def is_stream(data) -> bool:
    """In-memory data is a tuple (x, y); anything else iterable or callable is a stream."""
    return not isinstance(data, tuple)


class _Arrays:
    """In-memory (x, y): shuffled by a permutation drawn on the host, cut into batches."""

    def __init__(self, where, what, data, batch_size, drop_remainder, steps_per_epoch):
        self.x, self.y, self.n = _pair(where, what, data)
        if self.n == 0:
            raise ValueError(f"{where}: {what} is empty.")
        if batch_size is None:
            raise ValueError(f"{where}: batch_size is needed for in-memory {what}.")
        batch_size = check_int_at_least(where, "batch_size", batch_size, 1)
        if drop_remainder and batch_size > self.n:
            raise ValueError(f"{where}: batch_size {batch_size} is larger than the {self.n} "
                             f"samples of {what}, and drop_remainder=True would leave no "
                             f"batch; lower batch_size or pass drop_remainder=False.")
        self.batch_size = min(batch_size, self.n)
        full = self.n // self.batch_size
        self.steps = full if drop_remainder else -(-self.n // self.batch_size)
        if steps_per_epoch is not None:
            if steps_per_epoch > self.steps:
                raise ValueError(f"{where}: steps_per_epoch {steps_per_epoch} is more than "
                                 f"the {self.steps} batches of {what} at batch_size "
                                 f"{self.batch_size}.")
            self.steps = steps_per_epoch

    def batches(self, seed: list[int], epoch: int, shuffle: bool):
        order = (np.random.default_rng(seed + [epoch]).permutation(self.n) if shuffle
                 else np.arange(self.n))
        for i in range(self.steps):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield _take(self.x, idx), _take(self.y, idx), len(idx)


class _Stream:
    """An iterable of (x, y) batches, a callable making one per epoch, or an iterator.

    The first batch fixes the structure, trailing shapes and dtypes, and the batch size;
    a later batch that differs (or is larger) is an error naming it. A smaller one (the
    last partial batch) is skipped with drop_remainder=True, else run: its shape compiles
    once, and jit's cache serves it in every later epoch.
    """

    def __init__(self, where, what, data, drop_remainder, steps_per_epoch):
        self.where, self.what = where, what
        self.drop, self.steps_per_epoch = bool(drop_remainder), steps_per_epoch
        if callable(data) and not hasattr(data, "__iter__"):
            self.factory, self.iterator = data, None
        elif hasattr(data, "__iter__"):
            if iter(data) is data:  # an iterator: used up once, continued across epochs
                self.factory, self.iterator = None, data
            else:
                self.factory, self.iterator = (lambda: iter(data)), None
        else:
            raise TypeError(f"{where}: {what} must be a pair (x, y) of arrays, an iterable "
                            f"of (x, y) batches, or a callable returning one; got "
                            f"{type(data).__name__}.")
        self.spec = None
        self.steps = steps_per_epoch  # known after the first epoch otherwise

    def _signature(self, x, y):
        return (jax.tree.structure((x, y)),
                tuple((a.shape[1:], a.dtype) for a in jax.tree.leaves((x, y))))

    def batches(self, seed, epoch, shuffle):
        del seed, shuffle  # a stream's order is its own
        source = self.iterator if self.factory is None else iter(self.factory())
        count = 0
        while self.steps_per_epoch is None or count < self.steps_per_epoch:
            try:
                batch = next(source)
            except StopIteration:
                break
            x, y, n = _pair(self.where, f"{self.what} batch {count}", batch)
            signature = self._signature(x, y)
            if self.spec is None:
                self.spec, self.batch_size = signature, n
            elif signature != self.spec:
                raise ValueError(f"{self.where}: {self.what} batch {count} (epoch {epoch}) "
                                 f"has shapes and dtypes {signature[1]} (per sample), the "
                                 f"first batch had {self.spec[1]}.")
            if n > self.batch_size:
                raise ValueError(f"{self.where}: {self.what} batch {count} has {n} samples, "
                                 f"more than the first batch's {self.batch_size}.")
            count += 1
            if n < self.batch_size and self.drop:
                continue
            yield x, y, n
        if count == 0:
            again = " (an iterator is used up after one pass: pass a callable that " \
                    "re-creates it, or steps_per_epoch)" if self.factory is None else ""
            raise ValueError(f"{self.where}: {self.what} yielded no batch in epoch "
                             f"{epoch}{again}.")
        if self.steps_per_epoch is not None and count < self.steps_per_epoch:
            raise ValueError(f"{self.where}: {self.what} ran out after {count} batches in "
                             f"epoch {epoch}; steps_per_epoch is {self.steps_per_epoch}.")
        if self.steps is None:
            self.steps = count


def _source(where, what, data, batch_size, drop_remainder, steps_per_epoch):
    if steps_per_epoch is not None:
        steps_per_epoch = check_int_at_least(where, "steps_per_epoch", steps_per_epoch, 1)
    if not is_stream(data):
        return _Arrays(where, what, data, batch_size,
                       True if drop_remainder is None else drop_remainder, steps_per_epoch)
    if batch_size is not None and what == "data":
        raise ValueError(f"{where}: batch_size is for in-memory (x, y) arrays; a stream "
                         f"yields its own batches (got batch_size={batch_size}).")
    return _Stream(where, what, data, bool(drop_remainder), steps_per_epoch)


# --------------------------------------------------------------------------- compiled

def _compiled(model, key, build):
    """The jitted functions of `build()`, cached on the model object itself, so they live
    and die with the model (a module-level cache would keep every model alive)."""
    cache = model.__dict__.setdefault("_jaxlayers_compiled", {})
    try:
        hash(key)
    except TypeError:  # an unhashable loss or metric: build afresh
        return build()
    if key not in cache:
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        cache[key] = build()
    return cache[key]


def _add(sums, values, count):
    """sums + count * values, kept on the device and fetched once an epoch (fetching a
    scalar per step cost ~25 µs, a quarter of a small model's step)."""
    for name, v in values.items():
        if jnp.ndim(v) != 0:
            raise ValueError(f"fit: metric {name!r} must return a scalar, got shape "
                             f"{jnp.shape(v)}.")
    return {k: sums[k] + jnp.asarray(values[k], jnp.float32) * count for k in sums}


def _fit_fns(model, loss, optimizer, penalty, metric_fns, out_shardings=None, loss_scale=None):
    """fit's jitted train and eval steps; out_shardings (on a mesh) pins the train step's
    outputs to its inputs' placement, so every step sees the first one's shardings."""
    def build():
        raw_step = step_fn(model, loss, optimizer, penalty, metric_fns, "fit",
                           loss_scale=loss_scale)
        raw_eval = eval_fn(model, loss, penalty, metric_fns, True, "fit")

        def train_step(params, state, opt_state, sums, x, y, key, step):
            # the step's dropout key: fold_in(fold_in(key, 1), step), inside the compiled step
            params, state, opt_state, value, values = raw_step(
                params, state, opt_state, x, y,
                jax.random.fold_in(jax.random.fold_in(key, 1), step))
            values = {"loss": value, **values}
            count = jax.tree.leaves(y)[0].shape[0]
            return params, state, opt_state, _add(sums, values, count), values

        def eval_sums(params, state, sums, x, y):
            return _add(sums, raw_eval(params, state, x, y), jax.tree.leaves(y)[0].shape[0])

        pinned = {} if out_shardings is None else {"out_shardings": out_shardings}
        return (jax.jit(train_step, donate_argnums=(0, 1, 2, 3), **pinned),
                jax.jit(eval_sums, donate_argnums=(2,)))

    placement = (None if out_shardings is None else  # NamedShardings hash; trees do not
                 (jax.tree.structure(out_shardings), tuple(jax.tree.leaves(out_shardings))))
    scaling = None if loss_scale is None else loss_scale.config
    return _compiled(model, ("fit", loss, optimizer, penalty, tuple(metric_fns.items()),
                             placement, scaling), build)


def _eval_fns(model, loss, penalty, metric_fns, want_loss):
    def build():
        raw = eval_fn(model, loss, penalty, metric_fns, want_loss, "evaluate")

        def eval_sums(params, state, sums, x, y):
            return _add(sums, raw(params, state, x, y), jax.tree.leaves(y)[0].shape[0])

        return jax.jit(eval_sums, donate_argnums=(2,))

    return _compiled(model, ("evaluate", loss, penalty, tuple(metric_fns.items()), want_loss),
                     build)


def _zeros(names):
    return {k: np.zeros((), np.float32) for k in names}


def _means(sums, count: int, names) -> dict[str, float]:
    host = jax.device_get(sums)
    return {k: float(host[k]) / count for k in names}


def _run_eval(eval_sums, params, state, source, names, dp=None):
    sums, seen = _zeros(names), 0
    for x, y, n in source.batches([], 0, False):
        if dp is not None:  # a short last batch is replicated, not split
            x, y = dp.shard_batch((x, y), replicate_uneven=True)
            n = jax.tree.leaves(y)[0].shape[0]
        sums = eval_sums(params, state, sums, x, y)
        seen += n
    return _means(sums, seen, names)


# --------------------------------------------------------------------------- progress

def _format(logs: dict[str, float]) -> str:
    return " - ".join(f"{k} {v:.4f}" for k, v in logs.items())


class _Progress:
    """A tqdm bar per epoch (ETA, running loss and metrics) on a terminal, when asked for
    and installed; else, and whenever stderr is no terminal, one printed line per epoch."""

    def __init__(self, verbose: bool, progress: bool, epochs: int, first: int, names):
        self.verbose, self.epochs, self.first, self.names = verbose, epochs, first, names
        self.tqdm, self.bar = None, None
        if verbose and progress and getattr(sys.stderr, "isatty", lambda: False)():
            try:
                from tqdm import tqdm  # optional: the 'examples' extra
                self.tqdm = tqdm
            except ImportError:
                pass

    def start(self, epoch: int, steps: int | None):
        self.t0 = self.last = time.perf_counter()
        if self.tqdm is not None:
            self.bar = self.tqdm(total=steps, desc=f"Epoch {epoch + 1}/{self.first + self.epochs}",
                                 unit="step", leave=True, dynamic_ncols=True,
                                 smoothing=0)  # the average rate: steps are async

    def step(self, sums, count: int):
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.last > 0.5:  # fetching the sums syncs with the device: not every step
            self.last = now
            self.bar.set_postfix_str(_format(_means(sums, count, self.names)), refresh=False)

    def end(self, epoch: int, logs: dict[str, float]):
        if self.bar is not None:
            self.bar.set_postfix_str(_format(logs), refresh=False)
            self.close()
        elif self.verbose:
            print(f"Epoch {epoch + 1}/{self.first + self.epochs} - "
                  f"{time.perf_counter() - self.t0:.1f}s - {_format(logs)}", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# --------------------------------------------------------------------------- fit

def _overrides(cb, hook: str) -> bool:
    return getattr(type(cb), hook, None) is not getattr(Callback, hook)


def _start(where, start, optimizer, key, loss_scale) -> TrainState:
    if isinstance(start, TrainState):
        if key is not None:
            raise ValueError(f"{where}: key= is for a new run; the TrainState given carries "
                             f"its own key (use ts.replace(key=...) to change it).")
        _check_scaled(where, start.opt_state, loss_scale)
        return start
    if not isinstance(start, (tuple, list)) or len(start) != 2:
        raise TypeError(f"{where}: the second argument must be a jl.TrainState or a pair "
                        f"(params, state) from model.init, got {type(start).__name__}.")
    if key is None:
        raise TypeError(f"{where}: a new run needs key=, a PRNG key such as "
                        f"jax.random.key(0) (it drives shuffling and dropout).")
    ts = TrainState.create(start[0], start[1], optimizer, key)
    return ts if loss_scale is None else ts.replace(opt_state=(ts.opt_state, loss_scale))


def _check_scaled(where, opt_state, loss_scale) -> None:
    """A continued run's opt_state carries a loss scale exactly when loss_scale= is given
    (then with the same period, factor and floor)."""
    carried = (isinstance(opt_state, tuple) and len(opt_state) == 2
               and isinstance(opt_state[1], DynamicLossScale))
    if loss_scale is None and carried:
        raise ValueError(f"{where}: the TrainState's opt_state carries a jl.DynamicLossScale "
                         f"(a loss-scaled run); pass loss_scale= (with period, factor and "
                         f"min_loss_scale {opt_state[1].config}) to continue it.")
    if loss_scale is None:
        return
    if not carried:
        raise TypeError(f"{where}: with loss_scale=, a TrainState's opt_state must be the pair "
                        f"(optimizer_state, jl.DynamicLossScale), got "
                        f"{type(opt_state).__name__}; to start scaling a run, pass "
                        f"ts.replace(opt_state=(ts.opt_state, loss_scale)).")
    if opt_state[1].config != loss_scale.config:
        raise ValueError(f"{where}: the TrainState's loss scale has (period, factor, "
                         f"min_loss_scale) {opt_state[1].config}, but loss_scale= has "
                         f"{loss_scale.config}.")


def fit(model, start, data, *, loss: Callable, optimizer, epochs: int,
        batch_size: int | None = None, key=None, validation_data=None, metrics=None,
        penalty: Callable | None = None, callbacks: Iterable[Callback] = (),
        shuffle: bool = True, drop_remainder: bool | None = None,
        steps_per_epoch: int | None = None, checkpoint_dir=None, keep: int | None = 3,
        resume: bool = False, progress: bool = True, verbose: bool = True, mesh=None,
        data_axis="data", param_rules=None, loss_scale: DynamicLossScale | None = None):
    """Train `model` for `epochs` more epochs: returns (train_state, history).

    start: a `jl.TrainState` to continue (its params, state, optimizer state, key, step
      and epoch), or a pair (params, state) from `model.init` to begin a run
      (`TrainState.create(params, state, optimizer, key)`). Either is left intact: fit
      works on copies, and its own steps donate them.

    Reproducible and resumable. Epoch e (counted over the whole run, `ts.epoch`) visits
    in-memory data in the order of a permutation drawn by NumPy's PCG64 seeded with the
    key's words and e; optimizer step t (`ts.step`) gets the dropout key
    fold_in(fold_in(key, 1), t); the optimizer state carries Adam's moments and any optax
    schedule's count. So fit(5 epochs) then fit(ts, 5 more) equals fit(10 epochs), bit
    for bit, and so does a run resumed from a checkpoint.

    Batches. In-memory (x, y): `batch_size` samples per step. drop_remainder (default
    True for arrays) skips the last n % batch_size samples of each epoch's permutation:
    every step has one shape and compiles once, and as the order changes every epoch no
    sample is left out for long; False keeps the short batch (one more compilation, then
    cached). A batch_size above n is an error with drop_remainder, one batch of n
    without. Streams (any other iterable of (x, y) batches, or a callable returning one
    per epoch; an iterator is continued across epochs): the batches as they come; the
    first fixes shapes and dtypes; a smaller last batch is run (default) or skipped with
    drop_remainder=True. steps_per_epoch: batches per epoch (needed for an endless stream).
    Evaluation uses every sample, in batches of `batch_size`.

    Devices. mesh=None trains on the default device. Given a `jax.sharding.Mesh`, fit
    places the run once (`jl.distributed.data_parallel(mesh, data_axis,
    param_rules=param_rules).place`: params by the rules, the optimizer state like them,
    everything else replicated), splits every batch along axis 0 over the data axis, and
    runs the same jitted step, which XLA's SPMD partitioner (GSPMD) partitions: gradients
    and BatchNorm's batch statistics are the global batch's, so the run computes what it
    computes on one device, up to float32 summation order. Every training batch must be
    a multiple of the data axis's size; a short evaluation batch that is not is
    replicated. The returned TrainState stays on the mesh (`jax.device_get` or
    `jl.save` brings it to the host). With several processes (`jl.distributed.
    initialize`), each passes its own share of the data (`jl.distributed.local_data`,
    the same number of samples everywhere) and batch_size is per process.

    history: a `jl.callbacks.History`: history["loss"], ["accuracy"], ["val_loss"], ...,
    one float per epoch of this call. "loss" and the training metrics are means over the
    epoch's batches in training mode (dropout on), as Keras reports them, and "loss"
    includes the penalty; "val_*" are computed after the epoch in inference mode.

    Args:
      model: a jl.Layer. data, validation_data: see Batches.
      loss: loss(predictions, targets) -> scalar, e.g. jl.losses.mse.
      optimizer: an optax GradientTransformation (jaxlayers/train.py lists the seeds'
        optimizers); the same one each call of a run (its state is in the TrainState).
      epochs: epochs to run in this call, >= 0 (with resume=True: up to start.epoch +
        epochs in all). key: a PRNG key, for a new run only.
      metrics: `jl.metrics` names ("accuracy", "top_5_accuracy", "mae", ...) or callables
        metric(predictions, targets) -> scalar; "loss" is always logged. None: what the
        loss implies (`jl.metrics.for_loss`): accuracy for the cross-entropies, nothing
        more for a regression loss.
      penalty: optional penalty(params) -> scalar added to the loss (jl.regularizers).
      callbacks: `jl.callbacks` objects (EarlyStopping, ModelCheckpoint, CSVLogger,
        LearningRateLogger or your own `Callback`).
      shuffle: shuffle in-memory data each epoch.
      checkpoint_dir, keep: add a `ModelCheckpoint(checkpoint_dir, keep=keep)` (every
        epoch). resume: start from the newest checkpoint in checkpoint_dir when there is
        one, and run only the epochs left to reach start.epoch + epochs.
      progress: a tqdm bar per epoch on a terminal (tqdm is in the 'examples' extra);
        otherwise one line per epoch. verbose: False prints nothing.
      mesh, data_axis, param_rules: see Devices; data_axis is the mesh axis the batch
        is split over, param_rules {pattern: PartitionSpec} shards params by path, e.g.
        {"*/kernel": P(None, "model")} (`jl.distributed.data_parallel`).
      loss_scale: a `jl.DynamicLossScale`, for float16 compute (`jl.mixed_precision(model,
        jl.Policy(compute="float16"))`): each step computes g = ∇(S·L) / S, skips the
        update (params, state and optimizer state kept) when g is not finite, and grows or
        shrinks S (`jl.train.make_train_step(loss_scale=)`). A new run starts from this
        scale; the scale is carried in ts.opt_state = (optimizer state, scale), so it
        continues across calls, checkpoints and resume as the optimizer state does
        (ts.opt_state[1].loss_scale is the current S). A TrainState continued with
        loss_scale= must carry a scale of the same period, factor and min_loss_scale (start
        one with ts.replace(opt_state=(ts.opt_state, loss_scale))), and one that carries a
        scale needs loss_scale=. "loss" is logged unscaled; a skipped step's loss is still
        counted in the epoch's mean. None: no scaling.

    A KeyboardInterrupt or an exception (in a step or a callback) propagates; the last
    checkpoint written stays complete and restorable (checkpoints are atomic).

    Raises:
      ValueError: bad data (x and y of different lengths, empty data or stream, batches of
        changing shapes), batch_size < 1 or above n with drop_remainder, epochs < 0, an
        unknown metric, a callback's monitor that is not logged, resume without
        checkpoint_dir, a checkpoint of another model; on a mesh: a batch size the data
        axis does not divide, an axis the mesh lacks, a param rule matching nothing or
        splitting a dimension unevenly, param_rules without mesh; a TrainState carrying a
        loss scale without loss_scale=, or one of another period, factor or floor.
      TypeError: model, loss, optimizer, key, start, loss_scale or a callback of the
        wrong kind; with loss_scale, a TrainState whose opt_state carries no scale.
    """
    where = "fit"
    check_model(where, model)
    check_callable(where, "loss", loss, "loss(predictions, targets) -> scalar, e.g. "
                   "jl.losses.mse")
    check_optimizer(where, optimizer)
    if penalty is not None:
        check_callable(where, "penalty", penalty, "penalty(params) -> scalar")
    epochs = check_int_at_least(where, "epochs", epochs, 0)
    if key is not None:
        key = typed_key(where, key)
    if loss_scale is not None and not isinstance(loss_scale, DynamicLossScale):
        raise TypeError(f"{where}: loss_scale must be a jl.DynamicLossScale or None, got "
                        f"{loss_scale!r}.")
    ts = _start(where, start, optimizer, key, loss_scale)
    train = _source(where, "data", data, batch_size, drop_remainder, steps_per_epoch)
    dp = None
    if mesh is not None:
        dp = distributed._make(where, mesh, data_axis, param_rules)
        if isinstance(train, _Arrays):
            dp.check_batch_size(where, "batch_size", train.batch_size)
            if train.steps * train.batch_size > train.n:  # a short last batch is run
                dp.check_batch_size(where, "the last batch (drop_remainder=False) of",
                                    train.n % train.batch_size)
    elif param_rules is not None:
        raise ValueError("fit: param_rules need mesh=, the mesh the params are sharded over.")
    val = None
    if validation_data is not None:
        val = _source(where, "validation_data", validation_data,
                      getattr(train, "batch_size", None) or 256, False, None)
    if metrics is None:
        metrics = metrics_lib.for_loss(loss)
    metrics = (metrics,) if isinstance(metrics, str) or callable(metrics) else tuple(metrics)
    metric_fns = metrics_lib.resolve(where, metrics)
    callbacks = list(callbacks)
    for cb in callbacks:
        if not all(callable(getattr(cb, hook, None)) for hook in _HOOKS):
            raise TypeError(f"fit: callbacks must be jl.callbacks.Callback objects (e.g. "
                            f"jl.EarlyStopping()), got {cb!r}.")
    if resume and checkpoint_dir is None:
        raise ValueError("fit: resume=True needs checkpoint_dir, the folder to resume from.")
    if checkpoint_dir is not None:
        callbacks.append(ModelCheckpoint(checkpoint_dir, keep=keep))
    history = History()
    callbacks.append(history)  # last: it records the logs other callbacks added to

    # Copies: the steps donate their inputs, and the caller's arrays must survive fit (an
    # optimizer state may also hold the params themselves, as optax.lookahead's does).
    # On a mesh, placing the run below makes the copies.
    params, state, opt_state, run_key = (ts.params, ts.state, ts.opt_state,
                                         typed_key(where, ts.key))
    if dp is None:
        params, state, opt_state, run_key = copy_tree((params, state, opt_state, run_key))
    ts = TrainState(params, state, opt_state, run_key, int(ts.step), int(ts.epoch))
    target = ts.epoch + epochs
    if resume:
        from jaxlayers.checkpoint import CheckpointManager
        manager = CheckpointManager(checkpoint_dir, keep=keep)
        if manager.latest_step() is not None:
            ts = manager.restore(like=ts)
            ts = ts.replace(step=int(ts.step), epoch=int(ts.epoch))
            if verbose:
                print(f"Resumed from {manager.path(ts.step)} (epoch {ts.epoch}, "
                      f"step {ts.step}).", flush=True)
    out_shardings = None
    if dp is not None:
        ts = dp.place(ts, optimizer)
        out_shardings = tuple(jax.tree.map(lambda a: a.sharding, tree)
                              for tree in (ts.params, ts.state, ts.opt_state))
        out_shardings += (dp.replicated, dp.replicated)  # the sums and the batch's values
    names = ("loss",) + tuple(metric_fns)
    logged = names + (tuple(f"val_{k}" for k in names) if val is not None else ())
    train_step, eval_step = _fit_fns(model, loss, optimizer, penalty, metric_fns,
                                     out_shardings, loss_scale)
    if val is not None:
        eval_step = _eval_fns(model, loss, penalty, metric_fns, True)
    per_batch = [cb for cb in callbacks if _overrides(cb, "on_batch_end")]
    seed = [int(w) for w in np.ravel(jax.random.key_data(ts.key))]
    for cb in callbacks:
        cb.on_train_begin(logged, ts)

    bar = _Progress(verbose, progress, target - ts.epoch, ts.epoch, names)
    try:
        while ts.epoch < target:
            epoch = ts.epoch
            for cb in callbacks:
                cb.on_epoch_begin(epoch, ts)
            bar.start(epoch, train.steps)
            sums, seen = _zeros(names), 0
            params, state, opt_state, step = ts.params, ts.state, ts.opt_state, ts.step
            for x, y, n in train.batches(seed, epoch, shuffle):
                if dp is not None:
                    x, y = dp.shard_batch((x, y))
                    n = jax.tree.leaves(y)[0].shape[0]  # all processes' samples
                params, state, opt_state, sums, values = train_step(
                    params, state, opt_state, sums, x, y, ts.key, step)
                step, seen = step + 1, seen + n
                bar.step(sums, seen)
                if per_batch:
                    ts = ts.replace(params=params, state=state, opt_state=opt_state, step=step)
                    host = {k: float(v) for k, v in jax.device_get(values).items()}
                    for cb in per_batch:
                        cb.on_batch_end(step, dict(host), ts)
            ts = ts.replace(params=params, state=state, opt_state=opt_state, step=step,
                            epoch=epoch + 1)
            logs = _means(sums, seen, names)
            if val is not None:
                val_logs = _run_eval(eval_step, params, state, val, names, dp)
                logs.update({f"val_{k}": val_logs[k] for k in names})
            bar.end(epoch, logs)
            stops = [cb for cb in callbacks if cb.on_epoch_end(epoch, logs, ts)]
            if stops:
                if verbose:
                    print(f"Stopped after epoch {epoch + 1}: "
                          f"{', '.join(map(repr, stops))}.", flush=True)
                break
    finally:
        bar.close()
    final = ts
    for cb in callbacks:
        replaced = cb.on_train_end(final)
        if replaced is not None:
            ts = replaced
    return ts, history


# --------------------------------------------------------------------------- evaluate

def evaluate(model, params, state, data, *, loss: Callable | None = None, metrics=None,
             batch_size: int = 256, penalty: Callable | None = None, mesh=None,
             data_axis="data") -> dict[str, float]:
    """Loss and metrics over a whole data set, in inference mode: {name: float}.

    data: in-memory (x, y), evaluated in batches of `batch_size` (the last one shorter:
    one more compilation, cached), or a stream of (x, y) batches as `fit` takes. Each
    value is the sample-weighted mean over the batches, i.e. the data set's mean.
    metrics: as in `fit`; None means `jl.metrics.for_loss(loss)`. "loss" is reported when
    `loss` is given. Compiled once per model, loss and metrics (cached on the model).

    mesh, data_axis: as `fit`'s: every batch is split along axis 0 over the data axis;
    params and state already on the mesh (a TrainState `fit` returned) stay as they are
    placed, others are replicated onto it. The values equal one device's up to float32
    summation order. In-memory data: batch_size must be a multiple of the data axis's
    size (the ValueError `fit` raises, naming evaluate); the last, short batch (and a
    stream's batch) that the axis does not divide is handled, placed whole on every
    device rather than split, as fit does with validation data (one process only; with
    several, every batch must divide). With several processes each passes its own share
    (`jl.distributed.local_data`) as to fit, and the values are the whole set's.

    Raises:
      ValueError: neither loss nor metrics; bad data as in `fit`; on a mesh, a batch_size
        the data axis does not divide, an axis the mesh lacks.
    """
    where = "evaluate"
    check_model(where, model)
    if loss is None and not metrics:
        raise ValueError("evaluate: give loss= and/or metrics=, there is nothing to compute.")
    if loss is not None:
        check_callable(where, "loss", loss, "loss(predictions, targets) -> scalar")
    if metrics is None:
        metrics = metrics_lib.for_loss(loss)
    metrics = (metrics,) if isinstance(metrics, str) or callable(metrics) else tuple(metrics)
    metric_fns = metrics_lib.resolve(where, metrics)
    want_loss = loss is not None and "loss" in metrics
    names = (("loss",) if want_loss else ()) + tuple(metric_fns)
    source = _source(where, "data", data, None if is_stream(data) else batch_size, False, None)
    dp = None
    if mesh is not None:
        dp = distributed._make(where, mesh, data_axis, None)
        if isinstance(source, _Arrays) and source.n > source.batch_size:
            dp.check_batch_size(where, "batch_size", source.batch_size)
        params, state = dp.onto_mesh((params, state))
    eval_sums = _eval_fns(model, loss, penalty, metric_fns, want_loss)
    return _run_eval(eval_sums, params, state, source, names, dp)


def _predict_fn(model):
    def build():
        def forward(params, state, x):
            return model.apply(params, state, x, key=None, training=False)[0]
        return jax.jit(forward)

    return _compiled(model, ("predict",), build)


def _pad_rows(tree, size: int):
    """Every array of `tree` padded along axis 0 to `size` rows, repeating its last row."""
    def pad(a):
        short = size - a.shape[0]
        return np.concatenate([a, np.repeat(a[-1:], short, axis=0)]) if short else a
    return jax.tree.map(pad, tree)


def predict(model, params, state, x, *, batch_size: int = 256, mesh=None, data_axis="data"):
    """The model's outputs for every sample, in inference mode, as NumPy arrays.

    x: an array (or a pytree of arrays, one per input) with the samples on axis 0, run in
    batches of `batch_size` (the last one padded to that size and the padding cut off,
    so one shape is compiled); or an iterable of x batches (a callable returning one).
    The outputs (any pytree) are concatenated along axis 0.

    mesh, data_axis: as `fit`'s: every batch is split along axis 0 over the data axis
    (params and state placed as `evaluate` places them); the outputs equal one device's
    up to float32 summation order. batch_size must be a multiple of the data axis's size
    (the ValueError `fit` raises, naming predict), unless all of x fits in one batch; a
    batch the axis does not divide (that single batch, or a stream's) is handled: padded
    with copies of its last row up to the next multiple and the padding cut off. One
    process (the outputs are fetched whole to the host).

    Raises:
      ValueError: batch_size < 1, empty input, arrays of different sample counts; on a
        mesh, a batch_size the data axis does not divide, an axis the mesh lacks.
    """
    where = "predict"
    check_model(where, model)
    batch_size = check_int_at_least(where, "batch_size", batch_size, 1)
    forward = _predict_fn(model)
    dp = None
    if mesh is not None:
        dp = distributed._make(where, mesh, data_axis, None)
        params, state = dp.onto_mesh((params, state))

    def run(part, size):
        """The outputs of `part`'s rows, run as a batch of `size` rows (>= them)."""
        rows = jax.tree.leaves(part)[0].shape[0]
        part = _pad_rows(part, size)
        if dp is not None:
            part = dp.shard_batch(part)
        out = jax.device_get(forward(params, state, part))
        return jax.tree.map(lambda a: a[:rows], out)

    def on_mesh(rows):  # rows rounded up to a multiple of the data axis's size
        return rows if dp is None else -(-rows // dp.data_size) * dp.data_size

    outputs = []
    if isinstance(x, (np.ndarray, jax.Array, tuple, dict)):
        x = jax.tree.map(_canonical, x)
        n = _samples(where, "x", x)
        if n == 0:
            raise ValueError("predict: x is empty.")
        size = min(batch_size, n)
        if dp is not None and n > batch_size:
            dp.check_batch_size(where, "batch_size", batch_size)
        for i in range(0, n, size):
            outputs.append(run(_take(x, slice(i, i + size)), on_mesh(size)))
    else:
        batches = x() if callable(x) and not hasattr(x, "__iter__") else x
        for batch in batches:
            batch = jax.tree.map(_canonical, batch)
            outputs.append(run(batch, on_mesh(jax.tree.leaves(batch)[0].shape[0])))
        if not outputs:
            raise ValueError("predict: the stream yielded no batch.")
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
