"""`Masked`: a sequence and its validity mask, the value mask-aware layers pass along."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

__all__ = ["Masked"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Masked:
    """A sequence and its validity mask, passed between mask-aware layers.

    values: (N, T, ...) array; mask: bool (N, T), True where a step is real.
    `Embedding(mask_zero=True)` returns one; recurrent layers, Bidirectional, Dropout, Dense
    and the other per-step layers use it or pass it on; any other layer raises a TypeError.

    A registered pytree class with the two leaves `values` and `mask` (so it passes through
    `jit`, `vmap` and `grad`), not a tuple: in jaxlayers a tuple always means several
    inputs. `jax.ShapeDtypeStruct`s in place of the arrays make it an input spec.
    """

    values: Any
    mask: Any

    def __repr__(self) -> str:
        def short(a):
            shape = getattr(a, "shape", None)
            return f"{getattr(a, 'dtype', '')}{tuple(shape)}" if shape is not None else repr(a)
        return f"Masked(values={short(self.values)}, mask={short(self.mask)})"
