"""Conformance cases for the linear-chain CRF.

Merged into tests/registry.py's CASES (`CASES += CRF_CASES`). The reference decodes by
enumerating all K^T' tag sequences of each row's valid steps in float64 NumPy (T' <= 5,
K <= 4), never by calling jaxlayers.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

import jaxlayers as jl
from registry import Case, S


def brute_force(emit, mask, transitions, start, end):
    """(best tags (T,), 0 at padded steps; {path over the valid steps: score}) of one row.

    score(y) = start[y_1] + Σ emit[t, y_t] + Σ transitions[y_{t-1}, y_t] + end[y_T] over
    the valid steps t in order; the empty path scores 0.
    """
    steps = np.flatnonzero(mask)
    scores = {}
    for path in itertools.product(range(emit.shape[-1]), repeat=len(steps)):
        if not path:
            scores[path] = 0.0
            continue
        s = start[path[0]] + end[path[-1]] + sum(emit[t, y] for t, y in zip(steps, path))
        scores[path] = s + sum(transitions[a, b] for a, b in zip(path, path[1:]))
    tags = np.zeros(len(mask), np.int64)
    tags[steps] = max(scores, key=scores.get)
    return tags, scores


def _ref_crf(params, state, x, training):
    emit, mask = ((np.asarray(x.values, np.float64), np.asarray(x.mask, bool))
                  if isinstance(x, jl.Masked) else (np.asarray(x, np.float64), None))
    n, t, k = emit.shape
    mask = np.ones((n, t), bool) if mask is None else mask
    p = {name: np.asarray(v, np.float64) for name, v in params.items()}
    tags = np.stack([brute_force(emit[i], mask[i], p["transitions"], p["start"],
                                 p["end"])[0] for i in range(n)])
    per_seq = {name: np.broadcast_to(v, (n,) + v.shape) for name, v in p.items()}
    return jl.CRFOutput(tags, emit, mask, **per_seq)


def _errors(k, shape):
    wrong = shape[:2] + (k + 1,)
    return (
        (wrong, ValueError, rf"CRF: emissions must have num_tags = {k} scores on the last "
                            rf"axis, got shape \({', '.join(map(str, wrong))}\)"),
        (shape[:2], ValueError, rf"CRF: input must have rank 3 \(N, T, features\), got "
                                rf"shape \({shape[0]}, {shape[1]}\)"),
        (S(shape, jnp.int32), TypeError, r"CRF: input must have a floating dtype, got int32"),
    )


# transitions that matter: with the zero init (+ the suite's 0.1 noise) the emissions
# alone would decide almost every path
_STRONG = dict(transitions_init=jl.initializers.normal(1.5),
               boundary_init=jl.initializers.normal(1.0))

CRF_CASES = [
    Case(jl.CRF, (3,), {}, (2, 4, 3), reference=_ref_crf, bad_inputs=_errors(3, (2, 4, 3))),
    Case(jl.CRF, (4,), _STRONG, jl.Masked(S((3, 5, 4), jnp.float32), S((3, 5), jnp.bool_)),
         name="masked", reference=_ref_crf, bad_inputs=_errors(4, (3, 5, 4))[:1]),
    Case(jl.CRF, (2,), _STRONG, (4, 6, 2), name="k2-t6", reference=_ref_crf,
         bad_inputs=_errors(2, (4, 6, 2))),
]
