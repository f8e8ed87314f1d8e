"""A BiLSTM frame tagger trained with CTC (`optax.ctc_loss`), and greedy CTC decoding."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from jaxlayers._checks import check_int_at_least, check_positive_int
from jaxlayers._combinators import serial
from jaxlayers.core import Layer, layer_factory
from jaxlayers.layers.dense import Dense
from jaxlayers.layers.recurrent import LSTM
from jaxlayers.layers.wrappers import Bidirectional
from jaxlayers.masked import Masked

__all__ = ["ctc_tagger", "ctc_loss", "ctc_greedy_decode"]


@layer_factory
def ctc_tagger(num_labels: int, *, units: int = 64) -> Layer:
    """Per-frame CTC logits: Bidirectional(LSTM(units)) -> Dense(num_labels + 1).

    Math: h_t = [LSTM_fwd(x)_t ; LSTM_bwd(x)_t] (2 · units features: every frame sees the
    whole sequence), logits_t = h_t @ head["kernel"] + head["bias"]. Class 0 is the CTC
    blank and classes 1..num_labels are the labels (optax's blank_id=0 default); train
    with `ctc_loss`, read out with `ctc_greedy_decode`.

    Variable lengths: give a `jl.Masked(x, mask)` input (mask bool (N, T), True on real
    frames, a prefix of each row); the BiLSTM then reads each sequence within its own
    length (the backward direction starts at the last real frame) and the output is
    `jl.Masked(logits, mask)`, which `ctc_loss` and `ctc_greedy_decode` read.

    Shapes: x (N, T, F) float, or jl.Masked of it -> logits (N, T, num_labels + 1), or
    jl.Masked of them. params {"rnn": {"forward": LSTM params, "backward": LSTM params},
    "head": {"kernel": (2 · units, num_labels + 1), "bias": (num_labels + 1,)}}; state
    {"rnn": {"forward": {}, "backward": {}}, "head": {}}.

    Args:
      num_labels: the number of real labels (the blank is added).
      units: LSTM units per direction.

    Raises:
      ValueError: a non-positive num_labels or units (construction); the LSTM's and
        Dense's own shape errors (trace time).
    """
    check_positive_int("ctc_tagger", "num_labels", num_labels)
    check_positive_int("ctc_tagger", "units", units)
    model = serial(rnn=Bidirectional(LSTM(units, return_sequences=True)),
                   head=Dense(num_labels + 1))
    return Layer(model.init, model.apply, name="CTCTagger", children=model.children)


def _logits_and_paddings(where: str, logits, paddings=None):
    """(logits (N, T, C), paddings (N, T) float, 1.0 = padded) from an array or jl.Masked."""
    if isinstance(logits, Masked):
        if paddings is not None:
            raise ValueError(f"{where}: got a jl.Masked input and paddings=; give one.")
        logits, paddings = logits.values, 1.0 - logits.mask.astype(jnp.float32)
    if logits.ndim != 3:
        raise ValueError(f"{where}: logits must have rank 3 (N, T, classes), got shape "
                         f"{tuple(logits.shape)}.")
    if paddings is None:
        paddings = jnp.zeros(logits.shape[:2], jnp.float32)
    paddings = jnp.asarray(paddings).astype(jnp.float32)
    if paddings.shape != logits.shape[:2]:
        raise ValueError(f"{where}: paddings must be (N, T) = {tuple(logits.shape[:2])}, "
                         f"got {tuple(paddings.shape)}.")
    return logits, paddings


def _check_blank(where: str, blank_id, classes: int) -> int:
    blank_id = check_int_at_least(where, "blank_id", blank_id, 0)
    if blank_id >= classes:
        raise ValueError(f"{where}: blank_id must be a class index below {classes}, "
                         f"got {blank_id}.")
    return blank_id


def ctc_loss(predictions, labels, *, blank_id: int = 0, reduction: str = "mean"):
    """CTC negative log-likelihood, -log Σ_{alignments π of labels} Π_t softmax(logits_t)[π_t].

    An alignment has one class per (real) frame; collapsing repeats and then dropping
    blanks turns it into the label sequence. This is `optax.ctc_loss` with its paddings
    filled in: logit_paddings = 1 - mask from a jl.Masked prediction (all frames real for
    a plain array), label_paddings = (labels < 0).

    Shapes: predictions (N, T, C) logits or jl.Masked of them; labels (N, S) int, each
    row its labels then -1 padding (right-padded, as optax needs; a label never equals
    blank_id) -> a scalar, the mean (or sum) over sequences, or (N,) for
    reduction="none". The mean is per sequence, not per label (PyTorch's "mean" also
    divides each sequence's loss by its label count).

    An impossible target (more frames needed than given: a label sequence of length S
    with r adjacent repeats needs S + r frames) costs about 1e5, optax's log(0).
    """
    logits, paddings = _logits_and_paddings("ctc_loss", predictions)
    blank_id = _check_blank("ctc_loss", blank_id, logits.shape[-1])
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"ctc_loss: reduction must be one of ['mean', 'none', 'sum'], "
                         f"got {reduction!r}.")
    if labels.ndim != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"ctc_loss: labels must be (N, S) with N = {logits.shape[0]}, got "
                         f"shape {tuple(labels.shape)}.")
    label_paddings = (labels < 0).astype(jnp.float32)
    labels = jnp.where(labels < 0, blank_id, labels)  # padded slots: never a repeat
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    per_seq = optax.ctc_loss(logits, paddings, labels, label_paddings, blank_id=blank_id)
    if reduction == "none":
        return per_seq
    return per_seq.mean() if reduction == "mean" else per_seq.sum()


def ctc_greedy_decode(logits, paddings=None, blank_id: int = 0):
    """Best-path decoding: argmax per frame, collapse repeats, drop blanks.

    Math: π_t = argmax_c logits[n, t, c] over the real frames; the output keeps π_t when
    π_t != blank_id and π_t != π_{t-1}, so "a a _ a" gives "a a" and "a a a" gives "a".
    Greedy decoding is not the most probable label sequence in general (that sums over
    alignments: beam search), but is what a well-trained CTC model's peaky outputs need.

    Shapes: logits (N, T, C), or a jl.Masked of them (then paddings = 1 - mask);
    paddings (N, T), 1 (or True) on padded frames, which must come after the real ones
    -> labels (N, T) int32, each row its decoded labels then -1 (the format `ctc_loss`
    reads). jit-safe: no Python loop over values.
    """
    logits, paddings = _logits_and_paddings("ctc_greedy_decode", logits, paddings)
    blank_id = _check_blank("ctc_greedy_decode", blank_id, logits.shape[-1])
    best = jnp.argmax(logits, axis=-1).astype(jnp.int32)                     # (N, T)
    prev = jnp.pad(best[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    keep = (best != blank_id) & (best != prev) & (paddings == 0)
    n, t = best.shape
    slot = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, t)                  # t: dropped
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, t))
    return jnp.full((n, t), -1, jnp.int32).at[rows, slot].set(best, mode="drop")
