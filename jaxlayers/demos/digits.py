"""An MLP on scikit-learn's bundled 8×8 digits, trained with `jl.fit` and Adam."""

from __future__ import annotations

import functools
import os
import time

import jax
import numpy as np
import optax

import jaxlayers as jl
from jaxlayers.demos import missing_extra
from jaxlayers.demos._plots import plot_history


def model() -> jl.Layer:
    """64 -> 128 (relu) -> dropout 0.2 -> 64 (relu) -> 10 logits."""
    return jl.serial(jl.Dense(128, activation="relu"), jl.Dropout(0.2),
                     jl.Dense(64, activation="relu"), jl.Dense(10))


def load(seed: int = 0, test_size: float = 0.2):
    """(x_train, y_train), (x_test, y_test): pixels scaled from 0..16 to [0, 1], int labels,
    a stratified split seeded by `seed` (1437 / 360 images of the 1797)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise missing_extra(exc) from exc
    digits = load_digits()  # bundled with scikit-learn: no download
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, stratify=y,
                                              random_state=seed)
    return (x_tr, y_tr), (x_te, y_te)


def plot(history: dict, path: str, title: str = "digits MLP") -> str:
    """Loss and accuracy per epoch, train vs held-out, saved as a PNG at `path`."""
    return plot_history(history, path, title=title)


def run(*, epochs: int = 20, out: str = "outputs", seed: int = 0, batch_size: int = 32,
        learning_rate: float = 1e-3, checkpoint_dir: str | None = None, resume: bool = False,
        progress: bool = True, verbose: bool = True) -> dict:
    """Train the MLP, print its test accuracy and save `out/digits.png`.

    The held-out 20% is the `validation_data` of `jl.fit`, only watched for the curves
    (nothing is tuned on it). Reaches ~97-98% test accuracy in 20 epochs (a few seconds on
    2 CPU cores, most of it compiling).

    Returns {"test_accuracy", "test_loss", "history", "path", "seconds"}.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"digits: epochs must be an int >= 1, got {epochs!r}.")
    start = time.perf_counter()
    (x_tr, y_tr), (x_te, y_te) = load(seed)
    net = model()
    key_init, key_fit = jax.random.split(jax.random.key(seed))
    # one compiled init: eager init dispatches (and compiles) every small op on its own
    params, state = jax.jit(net.init, static_argnums=1)(key_init, x_tr[:batch_size].shape)
    loss = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)
    ts, history = jl.fit(
        net, (params, state), (x_tr, y_tr), loss=loss, optimizer=optax.adam(learning_rate),
        epochs=epochs, batch_size=batch_size, key=key_fit, validation_data=(x_te, y_te),
        checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, verbose=verbose)
    params, state = ts.params, ts.state
    # the held-out set is fit's validation data: its last-epoch metrics are the test ones
    test_accuracy, test_loss = history["val_accuracy"][-1], history["val_loss"][-1]
    path = plot(history, os.path.join(out, "digits.png"))
    seconds = time.perf_counter() - start
    if verbose:
        print(f"digits: test accuracy {test_accuracy:.4f} ({round(test_accuracy * len(y_te))}"
              f"/{len(y_te)}), test loss {test_loss:.4f}, {seconds:.1f} s")
        print(f"saved {path}")
    return {"test_accuracy": test_accuracy, "test_loss": test_loss, "history": history,
            "path": path, "seconds": seconds}
