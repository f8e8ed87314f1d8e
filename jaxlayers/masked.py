"""`Masked`: a sequence and its validity mask, the value mask-aware layers pass along."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Masked"]


class Masked(NamedTuple):
    """A sequence and its validity mask, passed between mask-aware layers.

    values: (N, T, ...) array; mask: bool (N, T), True where a step is real.
    `Embedding(mask_zero=True)` returns one; recurrent layers, Dropout, Dense and the
    other per-step layers use it or pass it on; any other layer raises a TypeError.
    """

    values: Any
    mask: Any
