"""A linear-chain conditional random field: the layer `CRF`, its output, and the algorithms.

For emissions emit (N, T, K) (unary scores, e.g. a Dense(K) head over a Bi-LSTM) and tags
y = (y_1, ..., y_T), with the params transitions (K, K) (row = from, column = to), start
(K,) and end (K,):

    score(y) = start[y_1] + Σ_{t=1..T} emit[t, y_t] + Σ_{t=2..T} transitions[y_{t-1}, y_t]
               + end[y_T]
    log p(y | emit) = score(y) - log Z,   log Z = logsumexp over all K^T tag sequences

log Z by the forward algorithm (a `lax.scan` over time, in log space):

    α_1(j) = start[j] + emit[1, j]
    α_t(j) = logsumexp_i(α_{t-1}(i) + transitions[i, j]) + emit[t, j]
    log Z  = logsumexp_j(α_T(j) + end[j])

The best path argmax_y score(y) by Viterbi: the same recursion with max for logsumexp,
storing backpointers bp_t(j) = argmax_i(δ_{t-1}(i) + transitions[i, j]), then a reverse
`lax.scan` from y_T = argmax_j(δ_T(j) + end[j]) back along y_{t-1} = bp_t(y_t).

Padding. A step whose mask is False is skipped: the recursions leave their carry (α, δ)
unchanged there, and the score links the valid steps around it, so a sequence means its
valid steps in order. Right padding (lengths), left padding (Keras's pad_sequences
default) and gaps all work; pytorch-crf needs the first step valid and TensorFlow
Addons refuses left padding. A sequence with no valid step has log Z = score = 0 (the one
empty path) and decodes to all zeros.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxlayers._checks import check_positive_int, compute_dtype, shape_of
from jaxlayers.core import Layer, layer_factory
from jaxlayers.initializers import zeros
from jaxlayers.layers.recurrent import sequence_mask

__all__ = ["CRF", "CRFOutput", "log_partition", "sequence_score", "log_likelihood",
           "viterbi"]


# ---------------------------------------------------------------- checks and layout

def _float(x):
    """x in at least float32: log-sum-exp over K^T paths needs more than bfloat16's 8 bits."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _potentials(where: str, emissions, transitions, start, end, mask):
    """Checked, batched float potentials: emit (N, T, K), trans (N, K, K), start/end
    (N, K), mask bool (N, T). transitions/start/end may be shared (K, K)/(K,)."""
    emissions = jnp.asarray(emissions)
    if emissions.ndim != 3 or not jnp.issubdtype(emissions.dtype, jnp.floating):
        raise ValueError(f"{where}: emissions must be a float array (N, T, num_tags), got "
                         f"{emissions.dtype}{tuple(emissions.shape)}.")
    n, t, k = emissions.shape
    batched = []
    for name, value, shape in (("transitions", transitions, (k, k)), ("start", start, (k,)),
                               ("end", end, (k,))):
        value = jnp.asarray(value)
        if tuple(value.shape) not in (shape, (n,) + shape):
            raise ValueError(f"{where}: {name} must have shape {shape} (or {(n,) + shape} "
                             f"per sequence) for emissions {(n, t, k)}, got "
                             f"{tuple(value.shape)}.")
        batched.append(_float(jnp.broadcast_to(value, (n,) + shape)))
    if mask is None:
        mask = jnp.ones((n, t), bool)
    elif tuple(jnp.shape(mask)) != (n, t):
        raise ValueError(f"{where}: mask must have shape (N, T) = {(n, t)}, got "
                         f"{tuple(jnp.shape(mask))}.")
    return (_float(emissions), *batched, jnp.asarray(mask).astype(bool))


def _check_tags(where: str, tags, mask, num_tags: int):
    """Integer tags (N, T); concrete ones must lie in [0, num_tags) at the valid steps."""
    tags = jnp.asarray(tags)
    if not jnp.issubdtype(tags.dtype, jnp.integer):
        raise TypeError(f"{where}: tags must have an integer dtype (tag indices), got "
                        f"{tags.dtype}.")
    if tuple(tags.shape) != tuple(mask.shape):
        raise ValueError(f"{where}: tags must have shape (N, T) = {tuple(mask.shape)}, as the "
                         f"emissions, got {tuple(tags.shape)}.")
    if not isinstance(tags, jax.core.Tracer) and not isinstance(mask, jax.core.Tracer):
        values, valid = np.asarray(tags), np.asarray(mask)
        bad = (values < 0) | (values >= num_tags)
        bad &= valid
        if bad.any():
            i = tuple(int(a[0]) for a in np.nonzero(bad))
            raise ValueError(f"{where}: tags must be in [0, num_tags) = [0, {num_tags}), got "
                             f"{int(values[i])} at {i} (of {int(bad.sum())} out of range).")
    return tags


# ---------------------------------------------------------------- the algorithms

def _time_major(*xs):
    return tuple(jnp.swapaxes(x, 0, 1) for x in xs)


def _forward(emit, trans, start, end, mask):
    """log Z (N,) by the forward recursion; a padded step leaves α unchanged."""
    def step(carry, inputs):
        alpha, started = carry                 # (N, K), (N,)
        e_t, m_t = inputs                      # (N, K), (N,)
        # α_t(j) = logsumexp_i(α_{t-1}(i) + trans[i, j]) + e_t(j); the first valid step
        # has no predecessor and starts from `start`
        through = jax.nn.logsumexp(alpha[:, :, None] + trans, axis=1)
        new = jnp.where(started[:, None], through, start) + e_t
        return (jnp.where(m_t[:, None], new, alpha), started | m_t), None

    init = (jnp.zeros_like(start), jnp.zeros(mask.shape[:1], bool))
    (alpha, started), _ = lax.scan(step, init, _time_major(emit, mask))
    return jnp.where(started, jax.nn.logsumexp(alpha + end, axis=1), 0.0)


def _previous_valid(mask):
    """(N, T) index of the last valid step before t, or -1 if there is none."""
    t = mask.shape[1]
    seen = jnp.where(mask, jnp.arange(t)[None, :], -1)
    upto = lax.cummax(seen, axis=1)                      # last valid step <= t
    return jnp.concatenate([jnp.full_like(upto[:, :1], -1), upto[:, :-1]], axis=1), upto


def _score(emit, tags, trans, start, end, mask):
    """score(y) (N,) of given tags, vectorised over time (no scan: nothing recurs)."""
    n, t, k = emit.shape
    # padded steps may hold any value (-100, say); out-of-range tags at valid steps pick
    # NaN emissions (mode="fill"), so a bad tag under jit shows up in the loss
    tags = jnp.where(mask, tags, 0)
    tags = jnp.where(tags < 0, k, tags)  # take would wrap negatives around
    e = jnp.take_along_axis(emit, tags[..., None], axis=2, mode="fill",
                            fill_value=jnp.nan)[..., 0]                     # (N, T)
    prev, upto = _previous_valid(mask)
    has_prev = prev >= 0
    prev_tags = jnp.take_along_axis(tags, jnp.maximum(prev, 0), axis=1)
    safe, safe_prev = jnp.minimum(tags, k - 1), jnp.minimum(prev_tags, k - 1)
    rows = jnp.arange(n)[:, None]
    pair = trans[rows, safe_prev, safe]                                     # (N, T)
    first = jnp.take_along_axis(start, safe, axis=1)                        # (N, T)
    total = jnp.sum(jnp.where(mask, e, 0.0), axis=1)
    total += jnp.sum(jnp.where(mask & has_prev, pair, 0.0), axis=1)
    total += jnp.sum(jnp.where(mask & ~has_prev, first, 0.0), axis=1)
    last = jnp.maximum(upto[:, -1], 0)                                      # (N,)
    last_tag = jnp.take_along_axis(safe, last[:, None], axis=1)[:, 0]
    return total + jnp.where(jnp.any(mask, axis=1), end[rows[:, 0], last_tag], 0.0)


def _viterbi(emit, trans, start, end, mask):
    """(tags int32 (N, T), best score (N,)): max-product forward, then the backtrace."""
    n, _, k = emit.shape
    identity = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (n, k))

    def step(carry, inputs):
        delta, started = carry
        e_t, m_t = inputs
        cand = delta[:, :, None] + trans                          # (N, from, to)
        new = jnp.where(started[:, None], jnp.max(cand, axis=1), start) + e_t
        # a padded step (and the first valid one) points each tag at itself, so the
        # backtrace walks through it unchanged
        bp = jnp.where((m_t & started)[:, None],
                       jnp.argmax(cand, axis=1).astype(jnp.int32), identity)
        return (jnp.where(m_t[:, None], new, delta), started | m_t), bp

    init = (jnp.zeros_like(start), jnp.zeros((n,), bool))
    (delta, started), bps = lax.scan(step, init, _time_major(emit, mask))
    final = delta + end
    best = jnp.where(started, jnp.max(final, axis=1), 0.0)

    def back(tag, inputs):
        bp_t, m_t = inputs                                        # (N, K), (N,)
        out = jnp.where(m_t, tag, 0)
        return jnp.take_along_axis(bp_t, tag[:, None], axis=1)[:, 0], out

    last = jnp.argmax(final, axis=1).astype(jnp.int32)
    _, tags = lax.scan(back, last, (bps, jnp.swapaxes(mask, 0, 1)), reverse=True)
    return jnp.swapaxes(tags, 0, 1), best


# ---------------------------------------------------------------- public functions

def log_partition(emissions, transitions, start, end, mask=None):
    """log Z = logsumexp over every tag sequence of score(y), by the forward algorithm.

    Shapes: emissions (N, T, K); transitions (K, K) or (N, K, K); start, end (K,) or
    (N, K); mask bool (N, T) or None (all valid) -> (N,), in at least float32.
    """
    return _forward(*_potentials("crf.log_partition", emissions, transitions, start, end,
                                 mask))


def sequence_score(emissions, tags, transitions, start, end, mask=None):
    """score(y) = start[y_1] + Σ emit[t, y_t] + Σ transitions[y_{t-1}, y_t] + end[y_T].

    Over the valid steps only (a padded step is skipped; its tag is ignored). Shapes as
    `log_partition`, tags int (N, T) -> (N,).
    """
    emit, trans, s, e, m = _potentials("crf.sequence_score", emissions, transitions, start,
                                       end, mask)
    return _score(emit, _check_tags("crf.sequence_score", tags, m, emit.shape[-1]), trans,
                  s, e, m)


def log_likelihood(emissions, tags, transitions, start, end, mask=None):
    """log p(tags | emissions) = score(tags) - log Z, per sequence (N,); <= 0.

    Shapes as `log_partition`, tags int (N, T). Tags at padded steps are ignored;
    concrete tags outside [0, K) at valid steps raise a ValueError, traced ones (under
    jit) give NaN. TensorFlow Addons' `crf_log_likelihood`, pytorch-crf's `CRF.forward`
    (reduction="none").
    """
    where = "crf.log_likelihood"
    emit, trans, s, e, m = _potentials(where, emissions, transitions, start, end, mask)
    tags = _check_tags(where, tags, m, emit.shape[-1])
    return _score(emit, tags, trans, s, e, m) - _forward(emit, trans, s, e, m)


def viterbi(emissions, transitions, start, end, mask=None):
    """The best tag sequence argmax_y score(y) and its score, by the Viterbi algorithm.

    Shapes as `log_partition` -> (tags int32 (N, T), 0 at padded steps; score (N,)).
    Ties go to the lowest tag index (argmax order).
    """
    return _viterbi(*_potentials("crf.viterbi", emissions, transitions, start, end, mask))


# ---------------------------------------------------------------- the layer

@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CRFOutput:
    """What `CRF` returns: the Viterbi tags and the potentials that score any tagging.

    tags: int32 (N, T), the best path (0 at padded steps); emissions (N, T, K) as given;
    mask bool (N, T) (all True without padding); transitions (N, K, K), start and end
    (N, K): the layer's params, one copy per sequence, so the loss can score tags
    (`jl.losses.crf_nll(output, tags)`) and every leaf keeps the batch axis first
    (`jl.predict` concatenates them; the copies are N·K² numbers, little next to the
    emissions' N·T·K). A jitted train step whose loss reads only the potentials does not
    decode: XLA drops the unused Viterbi scans (checked on the compiled HLO: 6 while loops
    in a Bi-LSTM-CRF gradient, 8 when the tags are returned too).

    A registered pytree class (it passes through jit, vmap and grad), as `jl.Masked`.
    """

    tags: Any
    emissions: Any
    mask: Any
    transitions: Any
    start: Any
    end: Any

    def _potentials(self):
        return self.emissions, self.transitions, self.start, self.end, self.mask

    def log_partition(self):
        """log Z (N,) by the forward algorithm."""
        return log_partition(*self._potentials())

    def score(self, tags):
        """score(tags) (N,), unnormalised."""
        e, tr, s, en, m = self._potentials()
        return sequence_score(e, tags, tr, s, en, m)

    def log_likelihood(self, tags):
        """log p(tags | emissions) (N,)."""
        e, tr, s, en, m = self._potentials()
        return log_likelihood(e, tags, tr, s, en, m)

    def __repr__(self) -> str:
        def short(a):
            shape = getattr(a, "shape", None)
            return f"{getattr(a, 'dtype', '')}{tuple(shape)}" if shape is not None else repr(a)
        fields = ", ".join(f"{f.name}={short(getattr(self, f.name))}"
                           for f in dataclasses.fields(self))
        return f"CRFOutput({fields})"


@layer_factory
def CRF(num_tags: int, *, transitions_init=zeros, boundary_init=zeros, dtype=None,
        param_dtype=jnp.float32) -> Layer:
    """A linear-chain CRF over per-step tag scores: decodes the best tag sequence.

    Math (see the module docstring for the recursions), emit = the input:
      score(y) = start[y_1] + Σ_t emit[t, y_t] + Σ_{t>1} transitions[y_{t-1}, y_t] + end[y_T]
      p(y | emit) = exp(score(y)) / Z,  Z = Σ_y' exp(score(y'))  (forward algorithm)
      tags = argmax_y score(y)                                     (Viterbi)
    transitions[i, j] scores tag i followed by tag j (from -> to, as pytorch-crf and
    TensorFlow Addons). The layer decodes; training minimises `jl.losses.crf_nll(output,
    tags)` = -log p(tags | emit), which reads the potentials the output carries:

        model = jl.serial(jl.Embedding(V, 32, mask_zero=True),
                          jl.Bidirectional(jl.LSTM(32, return_sequences=True)),
                          jl.Dense(K), jl.CRF(K))
        ts, history = jl.fit(model, model.init(key, (N, T)), (ids, tags),
                             loss=jl.losses.crf_nll, optimizer=optax.adam(1e-2), ...)
        out = jl.predict(model, ts.params, ts.state, ids)       # out.tags (N, T)

    Padding: a `jl.Masked` input (Embedding(mask_zero=True) -> LSTM -> Dense pass it on),
    or `mask=` (bool (N, T)) / `lengths=` (int (N,)) for direct calls. Padded steps are
    skipped by both algorithms (module docstring); their tags decode to 0.

    With zero transitions, start and end (the default init) the chain factorises:
    log p(y) = Σ_t log_softmax(emit[t])[y_t], the per-token softmax, so training starts
    from the softmax tagger and learns what the transitions add. pytorch-crf starts from
    U(-0.1, 0.1), TensorFlow Addons from an orthogonal chain kernel.

    Shapes: emissions (N, T, num_tags), or a `jl.Masked` of them -> `jl.CRFOutput` (tags
    int32 (N, T), emissions, mask, and the params per sequence: transitions (N, K, K),
    start and end (N, K)).
    params {"transitions": (K, K), "start": (K,), "end": (K,)}; state {}.

    Args:
      num_tags: K, the number of tags.
      transitions_init: `init(key, shape, dtype)` for transitions (default zeros).
      boundary_init: the same for start and end (default zeros).
      dtype: compute dtype of the output's float leaves (default: the input's); log Z and
        Viterbi run in at least float32. param_dtype: storage dtype of the params.

    Raises:
      ValueError: num_tags not a positive int (construction); input not of rank 3, a last
        axis other than num_tags, padding given two ways or of the wrong shape (trace time).
      TypeError: a non-float input.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> crf = jl.CRF(3)
      >>> emissions = jnp.array([[[1.0, 0, 0], [0, 2, 1], [0, 0, 3], [4, 0, 0]]])  # (N, T, K)
      >>> params, state = crf.init(jax.random.key(0), emissions.shape)
      >>> out, _ = crf.apply(params, state, emissions, lengths=jnp.array([3]))
      >>> print(out.tags)  # zero transitions: each step's argmax; the padded step decodes to 0
      [[0 1 2 0]]
      >>> params["transitions"] = jnp.zeros((3, 3)).at[1, 2].set(-9.0)  # 1 -> 2 costs 9
      >>> out, _ = crf.apply(params, state, emissions, lengths=jnp.array([3]))
      >>> print(out.tags)  # the best path is now 0, 2, 2 (score 1 + 1 + 3)
      [[0 2 2 0]]

    None of Keras, Flax, Haiku or Equinox ships a CRF. Unlike TensorFlow Addons' CRF
    layer this one has no built-in Dense kernel (put a Dense(K) before it) and returns
    one pytree instead of four tensors; unlike pytorch-crf's `decode` the tags come
    padded to (N, T), not as lists.
    """
    check_positive_int("CRF", "num_tags", num_tags)
    for name, fn in (("transitions_init", transitions_init), ("boundary_init", boundary_init)):
        if not callable(fn):
            raise ValueError(f"CRF: {name} must be an initializer init(key, shape, dtype), "
                             f"got {fn!r}.")

    def check_scores(shape):
        if len(shape) != 3:
            raise ValueError(f"CRF: input must have rank 3 (N, T, num_tags), got shape "
                             f"{tuple(shape)}.")
        if shape[-1] != num_tags:
            raise ValueError(f"CRF: emissions must have num_tags = {num_tags} scores on the "
                             f"last axis, got shape {tuple(shape)}; put a Dense({num_tags}) "
                             f"before the CRF.")

    def init(key, input_spec):
        check_scores(shape_of("CRF", input_spec))
        k_trans, k_start, k_end = jax.random.split(key, 3)
        return {"transitions": transitions_init(k_trans, (num_tags, num_tags), param_dtype),
                "start": boundary_init(k_start, (num_tags,), param_dtype),
                "end": boundary_init(k_end, (num_tags,), param_dtype)}, {}

    def apply(params, state, x, *, key=None, training=False, mask=None, lengths=None):
        del key, training  # deterministic
        emissions, mask, _ = sequence_mask("CRF", x, mask, lengths)
        check_scores(emissions.shape)
        n, t, _ = emissions.shape
        compute = compute_dtype(emissions, dtype)
        emissions = emissions.astype(compute)
        mask = jnp.ones((n, t), bool) if mask is None else mask
        per_seq = {name: jnp.broadcast_to(params[name].astype(compute),
                                          (n,) + params[name].shape)
                   for name in ("transitions", "start", "end")}
        # decoding needs no derivative: stop_gradient keeps the max-product scan out of AD
        tags, _ = viterbi(*(lax.stop_gradient(a) for a in (
            emissions, per_seq["transitions"], per_seq["start"], per_seq["end"])), mask)
        return CRFOutput(tags, emissions, mask, **per_seq), state

    return Layer(init, apply, name="CRF")
