"""Callbacks for `jl.fit`: hooks called with the logs and the `jl.TrainState`.

    ts, history = jl.fit(model, (params, state), (x, y), ..., callbacks=[
        jl.EarlyStopping(patience=3),
        jl.callbacks.ModelCheckpoint("run/ckpt", keep=3),
        jl.callbacks.CSVLogger("run/log.csv"),
        jl.callbacks.LearningRateLogger(schedule)])

Hooks, in the order `fit` calls them (all optional; `Callback`'s do nothing):

    on_train_begin(logged, train_state)      logged: the names fit records, in order
    on_epoch_begin(epoch, train_state)
    on_batch_end(step, logs, train_state)    logs: this batch's loss and metrics (floats)
    on_epoch_end(epoch, logs, train_state)   logs: the epoch's means (+ val_*); return
                                             True to stop training; may add entries to
                                             `logs`, which later callbacks and the history
                                             see (the learning-rate logger does)
    on_train_end(train_state)                return a TrainState to replace fit's result

`epoch` counts completed epochs of the run from 0 (`train_state.epoch` before the epoch);
`step` is the optimizer step just taken, counting from 1. `fit` fetches per-batch logs
from the device (a sync per step) only when some callback overrides `on_batch_end`. The
arrays of a TrainState handed to a hook are donated by fit's next step: copy what you
keep (EarlyStopping does), or save it at once (ModelCheckpoint does).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Callable

import jax

from jaxlayers._checks import check_int_at_least, check_non_negative_float, check_one_of

__all__ = ["Callback", "History", "EarlyStopping", "ModelCheckpoint", "CSVLogger",
           "LearningRateLogger"]


class Callback:
    """Base class for `fit` callbacks; every hook is optional and does nothing here."""

    def on_train_begin(self, logged: tuple[str, ...], train_state) -> None:
        del logged, train_state

    def on_epoch_begin(self, epoch: int, train_state) -> None:
        del epoch, train_state

    def on_batch_end(self, step: int, logs: dict[str, float], train_state) -> None:
        del step, logs, train_state

    def on_epoch_end(self, epoch: int, logs: dict[str, float], train_state) -> bool | None:
        del epoch, logs, train_state
        return False

    def on_train_end(self, train_state):
        del train_state
        return None


def copy_tree(tree):
    """Fresh device buffers for `tree` (no compilation), safe from a donating step."""
    return jax.device_put(tree, may_alias=False)


class History(Callback):
    """The record `fit` returns: one float per epoch for every logged name.

    `history["loss"]` (a list, as Keras's `History.history["loss"]`), `history.history`
    (the whole dict), `history.epoch` (the run's epoch numbers, continuing across calls
    of fit with the same TrainState), `"val_loss" in history`, `list(history)`.
    """

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logged, train_state):
        self.history = {k: [] for k in logged}
        self.epoch = []

    def on_epoch_end(self, epoch, logs, train_state):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        return False

    def __getitem__(self, name: str) -> list[float]:
        try:
            return self.history[name]
        except KeyError:
            raise KeyError(f"History: {name!r} was not logged; logged: "
                           f"{list(self.history)}") from None

    def __contains__(self, name) -> bool:
        return name in self.history

    def __iter__(self):
        return iter(self.history)

    def __len__(self) -> int:
        return len(self.history)

    def keys(self):
        return self.history.keys()

    def items(self):
        return self.history.items()

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v[-1]:.4g}" for k, v in self.history.items() if v)
        return f"History({len(self.epoch)} epochs{': ' + last if last else ''})"


def _mode(monitor: str, mode: str) -> str:
    return mode if mode != "auto" else ("max" if "acc" in monitor else "min")


def _check_monitor(where: str, monitor: str, logged) -> None:
    if monitor not in logged:
        hint = " (pass validation_data to fit)" if monitor.startswith("val_") else ""
        raise ValueError(f"{where}: monitor {monitor!r} is not logged by fit; it logs "
                         f"{list(logged)}{hint}.")


class EarlyStopping(Callback):
    """Stop `fit` when a logged value stops improving; optionally return the best state.

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
      restore_best: `fit` returns the TrainState of the best epoch (copied when it
        happens), whether or not training stopped early, as Keras 3's
        restore_best_weights.

    After `fit`: `best` (the best value), `best_epoch` (its index in the history lists) and
    `stopped_epoch` (index of the epoch after which training stopped, or None). Its count
    of epochs without improvement is not part of a checkpoint: a resumed run starts it
    afresh.

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
        self.mode = _mode(monitor, mode)
        self.restore_best = restore_best
        self._reset()

    def _reset(self):
        self.best, self.best_epoch, self.stopped_epoch = None, None, None
        self._wait, self._best_state, self._seen = 0, None, 0

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, logged, train_state):
        self._reset()
        _check_monitor("EarlyStopping", self.monitor, logged)

    def on_epoch_end(self, epoch, logs, train_state):
        value = float(logs[self.monitor])
        index, self._seen = self._seen, self._seen + 1
        if self._improved(value):
            self.best, self.best_epoch, self._wait = value, index, 0
            if self.restore_best:  # copy: the next train step donates these buffers
                self._best_state = copy_tree(train_state)
            return False
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = index
            return True
        return False

    def on_train_end(self, train_state):
        best, self._best_state = self._best_state, None
        return best if self.restore_best else None

    def __repr__(self) -> str:
        best = "" if self.best is None else \
            f", best {self.best:.6g} at epoch {self.best_epoch + 1}"
        return f"EarlyStopping(monitor={self.monitor!r}{best})"


class ModelCheckpoint(Callback):
    """Save the whole `jl.TrainState` to a `jl.CheckpointManager` folder during `fit`.

    Every `every` epochs (and after the last epoch), the TrainState is written
    atomically as `ckpt-{step:08d}.safetensors`; the newest `keep` are kept. With
    `monitor`, only epochs that improve it are saved (Keras's save_best_only), and `keep`
    then keeps the last improvements. The epoch's logs go into the checkpoint's metadata.
    `fit(checkpoint_dir=..., keep=..., resume=True)` adds one and resumes from it.

    A crash, a Ctrl-C or an exception in another callback leaves the last checkpoint
    complete and restorable: each save is atomic, and nothing is written on the way out.

    Raises:
      ValueError: keep < 1 or every < 1 (construction); a monitor fit does not log.
    """

    def __init__(self, directory, *, keep: int | None = 3, every: int = 1,
                 monitor: str | None = None, mode: str = "auto"):
        from jaxlayers.checkpoint import CheckpointManager

        self.manager = CheckpointManager(directory, keep=keep)
        self.every = check_int_at_least("ModelCheckpoint", "every", every, 1)
        check_one_of("ModelCheckpoint", "mode", mode, ("auto", "min", "max"))
        self.monitor = monitor
        self.mode = None if monitor is None else _mode(monitor, mode)
        self.best = None
        self._pending = False

    @property
    def directory(self) -> Path:
        return self.manager.directory

    def on_train_begin(self, logged, train_state):
        if self.monitor is not None:
            _check_monitor("ModelCheckpoint", self.monitor, logged)
        self._pending = False

    def on_epoch_end(self, epoch, logs, train_state):
        done = int(train_state.epoch)
        if self.monitor is not None:
            value = float(logs[self.monitor])
            better = not math.isnan(value) and (
                self.best is None or (value < self.best if self.mode == "min"
                                      else value > self.best))
            if not better:
                return False
            self.best = value
        elif done % self.every:
            self._pending = dict(logs)  # saved at the end if no later epoch is
            return False
        self._save(train_state, logs)
        return False

    def on_train_end(self, train_state):
        if self._pending:  # the last epoch fell between two `every`s
            self._save(train_state, self._pending)
        return None

    def _save(self, train_state, logs):
        self.manager.save(int(train_state.step), train_state,
                          metadata={"epoch": int(train_state.epoch),
                                    "logs": {k: float(v) for k, v in logs.items()}})
        self._pending = False


class CSVLogger(Callback):
    """Append one CSV row per epoch (epoch, then every logged name) to `path`.

    The header is written when the file is new or empty; `append=False` starts afresh.
    Each row is flushed when written, so a crash loses at most the running epoch.
    """

    def __init__(self, path, *, append: bool = True):
        self.path, self.append = Path(path), append
        self._names = None

    def on_train_begin(self, logged, train_state):
        if not self.append and self.path.exists():
            self.path.unlink()
        self._names = None

    def on_epoch_end(self, epoch, logs, train_state):
        if self._names is None:
            self._names = list(logs)
        new = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["epoch"] + self._names)
            writer.writerow([epoch] + [repr(float(logs[k])) for k in self._names])
        return False


class LearningRateLogger(Callback):
    """Log the learning rate of an optax schedule as "lr", at the epoch's last step.

    schedule: the `optax.Schedule` (step -> learning rate) given to the optimizer, e.g.
    `optax.cosine_decay_schedule(1e-3, 1000)`; the value logged is schedule(step) for
    the step count the optimizer has reached (what its next update would use).
    """

    def __init__(self, schedule: Callable, *, name: str = "lr"):
        if not callable(schedule):
            raise TypeError(f"LearningRateLogger: schedule must be a callable step -> "
                            f"learning rate (an optax schedule), got {schedule!r}.")
        self.schedule, self.name = schedule, name

    def on_epoch_end(self, epoch, logs, train_state):
        logs[self.name] = float(self.schedule(int(train_state.step)))
        return False
