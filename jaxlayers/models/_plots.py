"""PNG figures for the generative models: reconstructions, samples, segmentation masks."""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["plot_reconstructions", "plot_samples", "plot_segmentation"]


def _figure():
    try:
        from matplotlib.figure import Figure  # no pyplot: no global backend to set
    except ImportError as exc:
        from jaxlayers._extras import missing_extra
        raise missing_extra(exc) from exc
    return Figure


def _as_images(where: str, what: str, x) -> np.ndarray:
    """(N, H, W), (N, H, W, 1) or flat square (N, H·H) -> (N, H, W) for imshow."""
    x = np.asarray(x, np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        return x[..., 0]
    if x.ndim == 3:
        return x
    side = math.isqrt(x.shape[-1]) if x.ndim == 2 else 0
    if x.ndim == 2 and side * side == x.shape[-1]:
        return x.reshape(len(x), side, side)
    raise ValueError(f"{where}: {what} must be grey images (N, H, W), (N, H, W, 1) or flat "
                     f"squares (N, H·H), got shape {x.shape}.")


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _grid(fig, rows):
    """rows: (images, label, (vmin, vmax), cmap) per row of the figure."""
    cols = max(len(row[0]) for row in rows)
    axes = np.asarray(fig.subplots(len(rows), cols, squeeze=False))
    for r, (row, label, (vmin, vmax), cmap) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                ax.imshow(row[c], cmap=cmap, vmin=vmin, vmax=vmax)
            else:
                ax.axis("off")
        if label:
            axes[r, 0].set_ylabel(label, fontsize=9)


def plot_reconstructions(images, reconstructions, path: str, *, n: int = 10,
                         title: str = "autoencoder reconstructions",
                         value_range=(0.0, 1.0)) -> str:
    """The first n images (top row) above their reconstructions (bottom row), as a PNG at
    `path` (folders made); returns the path. Grey images (N, H, W[, 1]) or flat squares."""
    x = _as_images("plot_reconstructions", "images", images)[:n]
    y = _as_images("plot_reconstructions", "reconstructions", reconstructions)[:n]
    fig = _figure()(figsize=(1.1 * len(x), 2.6), layout="constrained")
    _grid(fig, [(x, "input", value_range, "gray"),
                (y, "reconstruction", value_range, "gray")])
    fig.suptitle(title)
    return _save(fig, path)


def plot_samples(samples, path: str, *, columns: int = 8, title: str = "samples",
                 value_range=(0.0, 1.0)) -> str:
    """A grid of generated grey images, `columns` per row, as a PNG at `path`; returns it.
    value_range: the pixels' range, (-1, 1) for a DCGAN's tanh output."""
    x = _as_images("plot_samples", "samples", samples)
    rows = [x[i:i + columns] for i in range(0, len(x), columns)]
    fig = _figure()(figsize=(1.1 * min(columns, len(x)), 1.1 * len(rows) + 0.5),
                                  layout="constrained")
    _grid(fig, [(row, "", value_range, "gray") for row in rows])
    fig.suptitle(title)
    return _save(fig, path)


def plot_segmentation(images, masks, predictions, path: str, *, n: int = 6,
                      title: str = "U-Net segmentation") -> str:
    """Rows: input images, true masks, predicted masks (probabilities in [0, 1]), for the
    first n examples, as a PNG at `path`; returns it."""
    x = _as_images("plot_segmentation", "images", images)[:n]
    m = _as_images("plot_segmentation", "masks", masks)[:n]
    p = _as_images("plot_segmentation", "predictions", predictions)[:n]
    fig = _figure()(figsize=(1.3 * len(x), 4.2), layout="constrained")
    _grid(fig, [(x, "input", (float(x.min()), float(x.max())), "gray"),
                (m, "true mask", (0.0, 1.0), "viridis"),
                (p, "predicted", (0.0, 1.0), "viridis")])
    fig.suptitle(title)
    return _save(fig, path)
