"""Embedding: a lookup table from integer ids to dense vectors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlayers._checks import check_array, check_float, check_last_axis, check_positive_int
from jaxlayers.core import Layer, Masked, layer_factory
from jaxlayers.initializers import uniform

__all__ = ["Embedding", "check_ids"]


def check_ids(ids, vocab_size: int, layer: str = "Embedding") -> None:
    """Raise a ValueError naming `layer` if concrete `ids` fall outside [0, vocab_size).

    Works on concrete arrays only (outside `jit`); a traced `ids` is skipped, as its values
    are unknown until run time.
    """
    if isinstance(ids, jax.core.Tracer):
        return
    values = np.asarray(ids)
    bad = values[(values < 0) | (values >= vocab_size)]
    if bad.size:
        raise ValueError(f"{layer}: ids must be in [0, vocab_size) = [0, {vocab_size}), got "
                         f"{np.unique(bad)[:10].tolist()} in an input of shape "
                         f"{values.shape}.")


@layer_factory
def Embedding(vocab_size: int, dim: int, *, mask_zero: bool = False,
              embeddings_init=uniform(), checked: bool = False, dtype=None,
              param_dtype=jnp.float32) -> Layer:
    """Look up a row of a learned table for each integer id: y[..., :] = embeddings[ids[...]].

    Equivalent to one_hot(ids, vocab_size) @ embeddings, without building the one-hot.

    Shapes: ids (N, T) (any integer shape) -> y (N, T, dim). A plain shape tuple given to
    `init`, `jl.output_shape` or `jl.summary` stands for int32 ids.
    params {"embeddings": (vocab_size, dim)}; state {}.

    Args:
      vocab_size, dim: table size.
      mask_zero: id 0 is padding: return `jl.Masked(y, ids != 0)`, which recurrent layers,
        Bidirectional, Dropout, Dense and attention honour (as Keras; reserve id 0, so
        vocab_size is the real vocabulary + 1).
      embeddings_init: `init(key, shape, dtype)`; default U(-0.05, 0.05) as Keras
        (PyTorch uses N(0, 1), Flax N(0, 1/dim)).
      checked: also raise a ValueError for ids outside [0, vocab_size) when `ids` are
        concrete (outside jit); see `check_ids`.
      dtype: compute/output dtype (default: param dtype); param_dtype: storage.

    apply(..., reverse=True) maps features (..., dim) to logits (..., vocab_size) =
    x @ embeddings.T: the output projection tied to the input embedding (GPT-2's; Flax's
    Embed.attend, Keras's ReversibleEmbedding(reverse=True)); in `jl.compose`, calling
    the same child for both shares the table.

    Out-of-range ids: PyTorch raises an IndexError, but under `jit` values are unknown
    until run time, so no error is possible there. An id outside [0, vocab_size) —
    negative ids included, which NumPy-style indexing would wrap — gives a row of NaN,
    so the mistake shows up in the loss instead of silently reading a clipped row.
    `checked=True` (or `jl.check_ids(ids, vocab_size)` on the batch) raises outside jit.

    Raises:
      ValueError: vocab_size or dim not a positive int (construction); with checked=True,
        concrete ids out of range.
      TypeError: non-integer ids, or a jl.Masked input.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> embed = jl.Embedding(10, 4, mask_zero=True)
      >>> ids = jnp.array([[3, 1, 0], [2, 0, 0]])
      >>> params, state = embed.init(jax.random.key(0), ids.shape)
      >>> out, _ = embed.apply(params, state, ids)
      >>> out.values.shape
      (2, 3, 4)
      >>> print(out.mask)  # id 0 is padding
      [[ True  True False]
       [ True False False]]
    """
    check_positive_int("Embedding", "vocab_size", vocab_size)
    check_positive_int("Embedding", "dim", dim)
    if not callable(embeddings_init):
        raise ValueError(f"Embedding: embeddings_init must be an initializer "
                         f"init(key, shape, dtype), got {embeddings_init!r}.")

    def init(key, input_spec):
        del input_spec  # the table does not depend on the batch
        return {"embeddings": embeddings_init(key, (vocab_size, dim), param_dtype)}, {}

    def apply(params, state, ids, *, key=None, training=False, reverse=False):
        del key, training  # deterministic
        if reverse:  # the tied output projection: features -> logits over the vocabulary
            check_float("Embedding", ids)
            check_last_axis("Embedding", ids, dim)
            table = params["embeddings"].astype(ids.dtype if dtype is None else dtype)
            lead = ids.shape[:-1]
            logits = ids.reshape(-1, dim).astype(table.dtype) @ table.T
            return logits.reshape(lead + (vocab_size,)), state
        check_array("Embedding", ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"Embedding: ids must have an integer dtype, got {ids.dtype} "
                            f"(shape {tuple(ids.shape)}); cast token ids with "
                            f".astype(jnp.int32).")
        if checked:
            check_ids(ids, vocab_size)
        table = params["embeddings"]
        table = table if dtype is None else table.astype(dtype)
        # mode="fill" gives NaN rows for ids >= vocab_size; negatives are sent there too,
        # as jnp.take would otherwise wrap them around.
        safe = jnp.where(ids < 0, vocab_size, ids)
        y = jnp.take(table, safe, axis=0, mode="fill", fill_value=jnp.nan)
        return (Masked(y, ids != 0) if mask_zero else y), state

    return Layer(init, apply, name="Embedding", input_dtype=jnp.int32)
