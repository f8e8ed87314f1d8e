"""Conformance cases for the recurrent layers, Bidirectional and Embedding.

To be merged into tests/registry.py's CASES (`CASES += RNN_CASES`). Shapes are tiny
(N=2, T=4, 3 features, 2-3 units); masked cases use a jl.Masked spec (random prefix masks);
each case lists the bad inputs its layer must refuse at trace time.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import jaxlayers as jl
from jaxlayers.layers.embedding import Embedding
from jaxlayers.layers.recurrent import GRU, LSTM, SimpleRNN
from jaxlayers.layers.wrappers import Bidirectional
from registry import Case, S

SEQ = (2, 4, 3)
MASKED = jl.Masked(S(SEQ, jnp.float32), S(SEQ[:2], jnp.bool_))


# ---------------------------------------------------------------- NumPy references
# Written from the docstrings of jaxlayers/layers/recurrent.py, cells.py, wrappers.py and
# embedding.py, in float64 loops over the batch and time; jaxlayers is never called (jl.Masked
# is only the container the outputs come back in).

def _f64(a):
    return np.asarray(a, np.float64)


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _relu(a):
    return np.maximum(a, 0.0)


def _split_input(x):
    """(values (N, T, D) float64, mask (N, T) bool or None, was_masked)."""
    if isinstance(x, jl.Masked):
        return _f64(x.values), np.asarray(x.mask, bool), True
    return _f64(x), None, False


def _step(kind, p, h, c, x_t, act, reset_after):
    """One step for one example: x_t (D,), h, c (U,) -> (h', c')."""
    W, U = _f64(p["kernel"]), _f64(p["recurrent_kernel"])
    b = _f64(p["bias"]) if "bias" in p else None
    u = U.shape[0]
    if kind == "SimpleRNN":
        a = x_t @ W + h @ U + (0.0 if b is None else b)
        return act(a), None
    if kind == "LSTM":
        a = x_t @ W + h @ U + (0.0 if b is None else b)
        i, f, g, o = (a[k * u:(k + 1) * u] for k in range(4))
        c_new = _sigmoid(f) * c + _sigmoid(i) * act(g)
        return _sigmoid(o) * act(c_new), c_new
    # GRU, columns z, r, h; with reset_after the bias is (2, 3U): input row, recurrent row
    if b is None:
        b_in, b_rec = np.zeros(3 * u), np.zeros(3 * u)
    elif reset_after:
        b_in, b_rec = b[0], b[1]
    else:
        b_in, b_rec = b, np.zeros(3 * u)
    xw = x_t @ W + b_in
    z = _sigmoid(xw[:u] + h @ U[:, :u] + b_rec[:u])
    r = _sigmoid(xw[u:2 * u] + h @ U[:, u:2 * u] + b_rec[u:2 * u])
    if reset_after:
        cand = act(xw[2 * u:] + r * (h @ U[:, 2 * u:] + b_rec[2 * u:]))
    else:
        cand = act(xw[2 * u:] + (r * h) @ U[:, 2 * u:])
    return (1 - z) * h + z * cand, None


def _run(kind, p, values, mask, *, go_backwards=False, act=np.tanh, reset_after=False,
         carry=None):
    """The recurrence over (N, T, D): (outputs (N, T, U) in reading order, h (N, U), c).

    A padded step keeps h (and c) and outputs zeros; go_backwards reads t = T-1 .. 0.
    `carry` is the initial (h, c) (c None without a cell state); zeros by default."""
    n, t, _ = values.shape
    u = _f64(p["recurrent_kernel"]).shape[0]
    if carry is None:
        carry = (np.zeros((n, u)), np.zeros((n, u)) if kind == "LSTM" else None)
    h_all, c_all = _f64(carry[0]).copy(), None if carry[1] is None else _f64(carry[1]).copy()
    ys = np.zeros((n, t, u))
    order = range(t - 1, -1, -1) if go_backwards else range(t)
    for row in range(n):
        h = h_all[row]
        c = None if c_all is None else c_all[row]
        for j, step in enumerate(order):
            if mask is not None and not mask[row, step]:
                continue  # state kept, output zero
            h, c = _step(kind, p, h, c, values[row, step], act, reset_after)
            ys[row, j] = h
        h_all[row] = h
        if c_all is not None:
            c_all[row] = c
    return ys, h_all, c_all


def _ref_rnn(kind, *, return_sequences=False, return_state=False, go_backwards=False,
             act=np.tanh, reset_after=False):
    """reference(params, state, x, training) for SimpleRNN / LSTM / GRU (dropout is off at
    training=False; random cases are compared at training=False only). A stateful layer
    starts from the carry in `state`."""
    def ref(params, state, x, training):
        values, mask, was_masked = _split_input(x)
        carry = None
        if "carry" in state:
            carry = (state["carry"]["h"], state["carry"].get("c"))
        ys, h, c = _run(kind, params, values, mask, go_backwards=go_backwards, act=act,
                        reset_after=reset_after, carry=carry)
        y = ys if return_sequences else h
        if return_sequences and was_masked:
            y = jl.Masked(y, mask[:, ::-1] if go_backwards else mask)
        if return_state:
            return (y, h) if c is None else (y, h, c)
        return y
    return ref


def _reverse_within_length(a, mask):
    """Each row's steps 0..L-1 reversed (L = 1 + its last real step), padding left in place."""
    out = a.copy()
    for row in range(a.shape[0]):
        real = np.flatnonzero(mask[row])
        length = real[-1] + 1 if real.size else a.shape[1]
        out[row, :length] = a[row, :length][::-1]
    return out


def _ref_bidirectional(kind, merge_mode, *, return_sequences=False, return_state=False,
                       act=np.tanh, reset_after=False):
    """y_f = run(x), y_b = reverse(run_b(reverse(x))) with reverse within each length;
    merged; return_state appends (h_f, [c_f], h_b, [c_b])."""
    def ref(params, state, x, training):
        values, mask, was_masked = _split_input(x)
        n, t, _ = values.shape
        full = np.ones((n, t), bool) if mask is None else mask
        kw = dict(act=act, reset_after=reset_after)
        ys_f, h_f, c_f = _run(kind, params["forward"], values, mask, **kw)
        x_b = _reverse_within_length(values, full)
        m_b = None if mask is None else _reverse_within_length(mask, full)
        ys_b, h_b, c_b = _run(kind, params["backward"], x_b, m_b, **kw)
        if return_sequences:
            y_f, y_b = ys_f, _reverse_within_length(ys_b, full)
        else:
            y_f, y_b = h_f, h_b
        merged = {"concat": lambda: (np.concatenate([y_f, y_b], axis=-1),),
                  "sum": lambda: (y_f + y_b,), "mul": lambda: (y_f * y_b,),
                  "ave": lambda: ((y_f + y_b) / 2,), None: lambda: (y_f, y_b)}[merge_mode]()
        if return_sequences and was_masked:
            merged = tuple(jl.Masked(v, mask) for v in merged)
        states = ()
        if return_state:
            states = tuple(s for s in (h_f, c_f, h_b, c_b) if s is not None)
        out = merged + states
        return out[0] if len(out) == 1 else out
    return ref


def _ref_embedding(mask_zero=False):
    """y[n, t] = embeddings[ids[n, t]]; mask_zero: jl.Masked(y, ids != 0)."""
    def ref(params, state, ids, training):
        ids = np.asarray(ids)
        y = _f64(params["embeddings"])[ids]
        return jl.Masked(y, ids != 0) if mask_zero else y
    return ref



def _sequence_errors(layer: str, features: int = 3) -> tuple:
    """What every sequence layer refuses: rank, features, dtype, a bad mask."""
    return (
        ((4, 3), ValueError, rf"{layer}: input must have rank 3 \(N, T, features\), "
                             rf"got shape \(4, 3\)"),
        ((2, 4, features + 1), ValueError,
         rf"{layer}: input must have {features} features on the last axis, "
         rf"got shape \(2, 4, {features + 1}\)"),
        (S(SEQ, jnp.int32), TypeError, rf"{layer}: input must have a floating dtype, got int32"),
        (jl.Masked(S(SEQ, jnp.float32), S((2, 3), jnp.bool_)), ValueError,
         rf"{layer}: mask must have shape \(N, T\) = \(2, 4\), got \(2, 3\)"),
        (jl.Masked(S(SEQ, jnp.float32), S(SEQ[:2], jnp.float32)), TypeError,
         rf"{layer}: mask must be bool"),
    )


_BI = _sequence_errors("Bidirectional")[:1] + (_sequence_errors("LSTM")[1],)

RNN_CASES = [
    Case(SimpleRNN, (3,), {}, SEQ, reference=_ref_rnn("SimpleRNN"),
         bad_inputs=_sequence_errors("SimpleRNN")),
    Case(LSTM, (3,), dict(return_sequences=True, return_state=True), SEQ, name="state",
         reference=_ref_rnn("LSTM", return_sequences=True, return_state=True),
         bad_inputs=_sequence_errors("LSTM")),
    Case(LSTM, (2,), dict(return_sequences=True, go_backwards=True, unroll=2, dropout=0.25,
                          recurrent_dropout=0.25, use_bias=False), MASKED, random=True,
         name="masked-backwards-dropout",
         reference=_ref_rnn("LSTM", return_sequences=True, go_backwards=True),
         bad_inputs=_sequence_errors("LSTM")[1:2]),
    Case(GRU, (3,), {}, SEQ, reference=_ref_rnn("GRU"), bad_inputs=_sequence_errors("GRU")),
    Case(GRU, (2,), dict(reset_after=True, return_sequences=True, return_state=True), MASKED,
         name="reset_after-masked",
         reference=_ref_rnn("GRU", return_sequences=True, return_state=True, reset_after=True),
         bad_inputs=_sequence_errors("GRU")[1:2]),
    Case(Bidirectional, (LSTM(2, return_sequences=True),), {}, MASKED, name="LSTM-concat",
         reference=_ref_bidirectional("LSTM", "concat", return_sequences=True),
         bad_inputs=_BI),
    Case(Bidirectional, (GRU(2, return_state=True, reset_after=True),),
         dict(merge_mode="sum"), MASKED, name="GRU-sum-state",
         reference=_ref_bidirectional("GRU", "sum", return_state=True, reset_after=True),
         bad_inputs=_sequence_errors("Bidirectional")[:1]),
    Case(Bidirectional, (SimpleRNN(2, activation="relu", return_sequences=True, dropout=0.3,
                                   recurrent_dropout=0.3),),
         dict(merge_mode=None), MASKED, random=True, name="SimpleRNN-pair-dropout",
         reference=_ref_bidirectional("SimpleRNN", None, return_sequences=True, act=_relu),
         bad_inputs=_sequence_errors("Bidirectional")[:1]),
    Case(Embedding, (5, 3), {}, S((2, 4), jnp.int32), input_dtype=jnp.int32,
         reference=_ref_embedding(), bad_inputs=(
             (S((2, 4), jnp.float32), TypeError, r"Embedding: ids must have an integer dtype, "
                                                 r"got float32"),
             (jl.Masked(S((2, 4), jnp.int32), S((2, 4), jnp.bool_)), TypeError,
              r"Embedding: does not accept a jl\.Masked input"),
         )),
    Case(Embedding, (6, 2), dict(mask_zero=True), S((2, 5), jnp.int32), input_dtype=jnp.int32,
         name="mask_zero", reference=_ref_embedding(mask_zero=True),
         bad_inputs=((S((2, 5), jnp.float32), TypeError,
                      r"Embedding: ids must have an integer dtype"),)),
    # non-default configurations. "ave" and "mul" catch a wrong merge that "concat" hides;
    # an LSTM's return_state order (y, h_f, c_f, h_b, c_b) through the wrapper
    Case(Bidirectional, (LSTM(2, return_sequences=True, return_state=True),),
         dict(merge_mode="ave"), MASKED, name="LSTM-ave-state",
         reference=_ref_bidirectional("LSTM", "ave", return_sequences=True,
                                      return_state=True),
         bad_inputs=_sequence_errors("Bidirectional")[:1]),
    Case(Bidirectional, (GRU(2, return_sequences=True),), dict(merge_mode="mul"), SEQ,
         name="GRU-mul", reference=_ref_bidirectional("GRU", "mul", return_sequences=True),
         bad_inputs=_BI[:1] + (_sequence_errors("GRU")[1],)),
    Case(Bidirectional, (SimpleRNN(2, return_sequences=True, return_state=True),),
         dict(merge_mode=None), SEQ, name="SimpleRNN-pair-state",
         reference=_ref_bidirectional("SimpleRNN", None, return_sequences=True,
                                      return_state=True),
         bad_inputs=_sequence_errors("Bidirectional")[:1]),
    # rates other than 0.5, where a rate used as the keep probability would go unnoticed
    Case(LSTM, (2,), dict(return_sequences=True, dropout=0.2, recurrent_dropout=0.3), SEQ,
         random=True, name="dropout-0.2-0.3", reference=_ref_rnn("LSTM", return_sequences=True),
         bad_inputs=_sequence_errors("LSTM")[1:2]),
    # stateful: the carry lives in state {"carry": {"h", "c"}}; apply starts from it
    Case(LSTM, (2,), dict(stateful=True, return_sequences=True), SEQ, name="stateful",
         reference=_ref_rnn("LSTM", return_sequences=True),
         skip={"shapes": "stateful=True keeps an (N, units) carry in state by design "
                         "(Keras), so state depends on init's batch size"},
         bad_inputs=_sequence_errors("LSTM")[1:2] + (
             ((3, 4, 3), ValueError, r"LSTM: stateful=True keeps a carry for batch size 2 "
                                     r"\(from init\), got an input of batch size 3"),)),
    Case(GRU, (2,), dict(go_backwards=True, return_sequences=True, return_state=True), MASKED,
         name="backwards-state-masked",
         reference=_ref_rnn("GRU", return_sequences=True, return_state=True,
                            go_backwards=True),
         bad_inputs=_sequence_errors("GRU")[1:2]),
]
