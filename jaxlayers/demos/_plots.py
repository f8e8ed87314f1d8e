"""The demos' training-curve figure: loss and accuracy per epoch, train against held-out."""

from __future__ import annotations

import os

import numpy as np

from jaxlayers.demos import missing_extra


def plot_history(history, path: str, *, title: str, held_out: str = "test",
                 log_loss: bool = False, loss_label: str = "loss",
                 accuracy_label: str = "accuracy", accuracy_title: str | None = None,
                 baselines: dict[str, float] | None = None, ylim=None) -> str:
    """Two panels from a `jl.fit` history (needs loss, accuracy, val_loss, val_accuracy):
    the loss (log scale with log_loss=True) and the accuracy, each train vs `held_out`,
    with optional horizontal lines for baseline accuracies. Saved as a PNG at `path`
    (folders made); returns the path."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend to set
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise missing_extra(exc) from exc
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.arange(1, len(history["loss"]) + 1)
    draw = ax_loss.semilogy if log_loss else ax_loss.plot
    draw(epochs, history["loss"], "o-", label="train")
    draw(epochs, history["val_loss"], "s-", label=held_out)
    ax_loss.set(xlabel="epoch", ylabel=loss_label, title=f"{title}: loss")
    ax_acc.plot(epochs, history["accuracy"], "o-", label="train")
    ax_acc.plot(epochs, history["val_accuracy"], "s-", label=held_out)
    for (name, value), style in zip((baselines or {}).items(), ("--", ":", "-.")):
        ax_acc.axhline(value, color="gray", ls=style, label=f"{name}: {value:.3f}")
    ax_acc.set(xlabel="epoch", ylabel=accuracy_label,
               title=accuracy_title or f"{title}: accuracy")
    if ylim is not None:
        ax_acc.set_ylim(*ylim)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax_loss.legend()
    ax_acc.legend(loc="lower right")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
