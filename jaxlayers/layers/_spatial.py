"""Argument parsing and shape checks shared by the spatial layers (conv, pool, resample)."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from jaxlayers._checks import check_float, is_int as _is_int
from jaxlayers.core import layer_factory

# Channels-last layouts, for error messages: input rank n + 2.
LAYOUTS = {1: "(N, L, C)", 2: "(N, H, W, C)", 3: "(N, D, H, W, C)"}
PADDING_NAMES = ("same", "valid")


def ntuple(layer: str, name: str, value: Any, n: int, minimum: int = 1) -> tuple[int, ...]:
    """An int or an n-tuple of ints, each >= `minimum`, as an n-tuple (kernel_size, strides...)."""
    values = (value,) * n if _is_int(value) else value
    if (not isinstance(values, (tuple, list)) or len(values) != n
            or not all(_is_int(v) and v >= minimum for v in values)):
        what = "positive int" if minimum == 1 else f"int >= {minimum}"
        raise ValueError(f"{layer}: {name} must be a {what} or a tuple of {n} such ints, "
                         f"got {value!r}.")
    return tuple(int(v) for v in values)


def pairs(layer: str, name: str, value: Any, n: int) -> tuple[tuple[int, int], ...]:
    """Keras's padding/cropping forms as n (low, high) pairs of ints >= 0.

    An int (every side), n ints (symmetric per axis), n (low, high) pairs; for n == 1 also
    a bare (low, high) pair, as Keras's ZeroPadding1D and Cropping1D take.
    """
    def bad():
        return ValueError(f"{layer}: {name} must be an int >= 0, a tuple of {n} ints or "
                          f"{n} (low, high) pairs of ints >= 0, got {value!r}.")

    if _is_int(value):
        value = (value,) * n
    if not isinstance(value, (tuple, list)):
        raise bad()
    if n == 1 and len(value) == 2 and all(_is_int(v) for v in value):
        value = (tuple(value),)
    if len(value) != n:
        raise bad()
    out = []
    for v in value:
        pair = (v, v) if _is_int(v) else v
        if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                or not all(_is_int(p) and p >= 0 for p in pair)):
            raise bad()
        out.append((int(pair[0]), int(pair[1])))
    return tuple(out)


def parse_padding(layer: str, padding: Any, n: int):
    """"valid", "same", or explicit (low, high) pairs (from an int, n ints or n pairs)."""
    if isinstance(padding, str):
        if padding not in PADDING_NAMES:
            raise ValueError(f"{layer}: padding must be 'valid', 'same', an int or {n} "
                             f"(low, high) pairs, got {padding!r}.")
        return padding
    return pairs(layer, "padding", padding, n)


def same_pads(size: int, window: int, stride: int) -> tuple[int, int]:
    """lax/Keras "same": out = ceil(size / stride), the odd extra pad at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def explicit_pads(layer: str, x_shape, padding, windows, strides, what: str = "kernel"):
    """Resolve `padding` to pairs for the spatial axes of x_shape (N, *spatial, C).

    `windows` are the effective (dilated) window sizes. Raises a ValueError naming `layer`
    when a window is larger than its padded input axis (the output would be empty).
    """
    spatial = tuple(x_shape[1:-1])
    if padding == "valid":
        pads = tuple((0, 0) for _ in spatial)
    elif padding == "same":
        pads = tuple(same_pads(s, w, st) for s, w, st in zip(spatial, windows, strides))
    else:
        pads = padding
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, pads))
    if any(p < w for p, w in zip(padded, windows)):
        raise ValueError(f"{layer}: the {what} window {tuple(windows)} must fit in the padded "
                         f"input {padded}, got input shape {tuple(x_shape)} with padding "
                         f"{padding!r}.")
    return pads


def check_input(layer: str, x: Any, n: int) -> None:
    """A floating, channels-last array of rank n + 2, or a ValueError/TypeError naming `layer`."""
    check_float(layer, x)
    if x.ndim != n + 2:
        hint = "; add a batch axis" if x.ndim == n + 1 else ""
        raise ValueError(f"{layer}: input must have rank {n + 2} {LAYOUTS[n]}, got shape "
                         f"{tuple(x.shape)}{hint}.")


def check_shape(layer: str, shape: tuple, n: int) -> None:
    """check_input's rank check on a shape (in init)."""
    if len(shape) != n + 2:
        hint = "; add a batch axis" if len(shape) == n + 1 else ""
        raise ValueError(f"{layer}: input must have rank {n + 2} {LAYOUTS[n]}, got shape "
                         f"{tuple(shape)}{hint}.")


def specialise(general: Callable, n: int, name: str, doc: str) -> Callable:
    """`general(n, name, *args, **kwargs)` as a public factory for one dimension.

    Gives Conv1D/Conv2D/Conv3D (and the pooling and resampling families) one signature,
    written once on `general`, with `help()` showing it without the two leading arguments.
    """
    def factory(*args, **kwargs):
        return general(n, name, *args, **kwargs)

    sig = inspect.signature(general)
    factory.__signature__ = sig.replace(parameters=list(sig.parameters.values())[2:])
    factory.__name__ = factory.__qualname__ = name
    factory.__module__ = getattr(general, "func", general).__module__
    factory.__doc__ = doc
    return layer_factory(factory)
