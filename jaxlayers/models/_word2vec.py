"""Skip-gram word2vec with negative sampling (SGNS): the model, its loss and data helpers."""

from __future__ import annotations

import collections
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlayers._checks import check_positive_float, check_positive_int
from jaxlayers._compose import compose
from jaxlayers.core import Layer, layer_factory
from jaxlayers.initializers import uniform, zeros
from jaxlayers.layers.embedding import Embedding

__all__ = ["word2vec", "word2vec_loss", "build_vocab", "skipgram_pairs",
           "unigram_probs", "skipgram_batches", "nearest_neighbours"]


def _check_ids(x, what: str, rank: int) -> None:
    if not hasattr(x, "dtype") or not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"word2vec: {what} must be integer word ids, got "
                        f"{getattr(x, 'dtype', type(x).__name__)}.")
    if x.ndim != rank:
        layout = "(N,)" if rank == 1 else "(N, K)"
        raise ValueError(f"word2vec: {what} must have rank {rank} {layout}, "
                         f"got shape {tuple(x.shape)}.")


@layer_factory
def word2vec(vocab_size: int, dim: int) -> Layer:
    """Skip-gram scores: (centre, context, negatives) ids -> (N, 1 + K) logits.

    Math: v_c = centre["embeddings"][c] (the word's own vector), u_w =
    context["embeddings"][w] (the vector it has as somebody's context), and
      scores[n, 0]     = u_o · v_c            (o: the observed context word),
      scores[n, 1 + k] = u_{neg_k} · v_c      (k = 0..K-1: the negatives).
    The SGNS loss (Mikolov et al. 2013) of one pair is
      -log σ(scores[n, 0]) - Σ_k log σ(-scores[n, 1 + k]),
    which is sigmoid cross-entropy against targets [1, 0, ..., 0]: `word2vec_loss`, so
    `jl.fit(model, ..., loss=jl.models.word2vec_loss)` trains it (`skipgram_batches`
    makes the batches, drawing fresh negatives every epoch).

    Shapes: input the tuple (centre (N,), context (N,), negatives (N, K)) of integer ids
    -> scores (N, 1 + K). params {"centre": {"embeddings": (V, dim)}, "context":
    {"embeddings": (V, dim)}}; state {}. The word vectors are params["centre"]
    ["embeddings"] (`nearest_neighbours`).

    Initialisation as word2vec.c and gensim: centre vectors U(-0.5/dim, 0.5/dim),
    context vectors zeros (so every score, and the loss log 2 · (1 + K), starts equal).

    Args:
      vocab_size: V, the number of word ids. dim: the vector size.

    Raises:
      ValueError: a non-positive size (construction); inputs not three arrays of ranks
        1, 1, 2 with one batch size (trace time).
      TypeError: ids that are not integers (trace time).
    """
    check_positive_int("word2vec", "vocab_size", vocab_size)
    check_positive_int("word2vec", "dim", dim)

    def word2vec_forward(m, ids):
        if not isinstance(ids, (tuple, list)) or len(ids) != 3:
            raise ValueError("word2vec: input must be the tuple (centre (N,), context (N,), "
                             f"negatives (N, K)) of ids, got {type(ids).__name__}.")
        centre, context, negatives = ids
        for what, x, rank in (("centre", centre, 1), ("context", context, 1),
                              ("negatives", negatives, 2)):
            _check_ids(x, what, rank)
        if not centre.shape[0] == context.shape[0] == negatives.shape[0]:
            raise ValueError(f"word2vec: centre, context and negatives must share the batch "
                             f"size, got shapes {tuple(centre.shape)}, "
                             f"{tuple(context.shape)}, {tuple(negatives.shape)}.")
        v = m.centre(centre)                                               # (N, d)
        u = m.context(jnp.concatenate([context[:, None], negatives], 1))   # (N, 1+K, d)
        return jnp.einsum("nd,nkd->nk", v, u)

    model = compose(word2vec_forward,
                    centre=Embedding(vocab_size, dim,
                                     embeddings_init=uniform(-0.5 / dim, 0.5 / dim)),
                    context=Embedding(vocab_size, dim, embeddings_init=zeros))
    return Layer(model.init, model.apply, name="Word2Vec", children=model.children,
                 calls=model.calls, input_dtype=jnp.int32)


def word2vec_loss(scores, targets, *, reduction: str = "mean"):
    """SGNS loss of `word2vec` scores: Σ_j sigmoid cross-entropy(scores[:, j], targets[:, j]).

    With targets [1, 0, ..., 0] (what `skipgram_batches` yields) each row is
    -log σ(u_o · v_c) - Σ_k log σ(-u_k · v_c). Computed as optax's
    sigmoid_binary_cross_entropy (log σ via softplus, stable for large scores).

    Shapes: scores (N, 1 + K), targets (N, 1 + K) in {0, 1} -> a scalar (mean or sum
    over N) or (N,) for reduction="none".
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"word2vec_loss: reduction must be one of ['mean', 'none', 'sum'], "
                         f"got {reduction!r}.")
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"word2vec_loss: scores and targets must both be (N, 1 + K), got "
                         f"{tuple(scores.shape)} and {tuple(targets.shape)}.")
    scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))
    per_pair = optax.sigmoid_binary_cross_entropy(scores, targets.astype(scores.dtype)).sum(-1)
    if reduction == "none":
        return per_pair
    return per_pair.mean() if reduction == "mean" else per_pair.sum()


def build_vocab(sentences: Iterable[Sequence[str]], max_size: int):
    """The `max_size` most frequent tokens, and each sentence as ids (-1: not in it).

    Ties in frequency are broken by first appearance, so the vocabulary is deterministic.
    Returns (words: list[str] by falling count, counts: int64 (V,), encoded: list of int32
    arrays, one per sentence).
    """
    check_positive_int("build_vocab", "max_size", max_size)
    sentences = [list(s) for s in sentences]
    counts = collections.Counter(w for s in sentences for w in s)  # insertion-ordered ties
    words = [w for w, _ in counts.most_common(max_size)]
    index = {w: i for i, w in enumerate(words)}
    encoded = [np.array([index.get(w, -1) for w in s], np.int32) for s in sentences]
    return words, np.array([counts[w] for w in words], np.int64), encoded


def skipgram_pairs(sentences: Iterable[Sequence[int]], window: int, *,
                   subsample: float | None = None, counts=None, key=None):
    """All (centre, context) pairs with the context at most `window` words away.

    Ids < 0 (out of vocabulary) are dropped first, as word2vec.c drops rare words, so a
    window spans the words that remain; pairs never cross a sentence border. The window
    is fixed (word2vec.c shrinks it to a random size per word, which weights near words
    more; here every distance up to `window` counts once).

    Subsampling (off by default): with `subsample=t`, a word of frequency f = count / total
    is kept with probability min(1, (sqrt(f / t) + 1) · t / f) (word2vec.c's rule), drawn
    with `key` before the pairs are made. The test corpora are tiny (a few thousand
    words), where dropping frequent words mostly removes data, so they train without it.

    Returns (centre, context): int32 arrays (P,), in sentence order.

    Raises:
      ValueError: window < 1; subsample <= 0, or given without counts and key.
    """
    check_positive_int("skipgram_pairs", "window", window)
    sentences = [np.asarray(s, np.int64) for s in sentences]
    sentences = [s[s >= 0] for s in sentences]
    if subsample is not None:
        t = check_positive_float("skipgram_pairs", "subsample", subsample)
        if counts is None or key is None:
            raise ValueError("skipgram_pairs: subsample needs the vocabulary's counts and a "
                             "PRNG key (counts=, key=).")
        f = np.asarray(counts, np.float64) / np.sum(counts)
        keep_p = np.minimum(1.0, (np.sqrt(f / t) + 1) * t / f)
        draws = np.asarray(jax.random.uniform(key, (sum(len(s) for s in sentences),)))
        offsets = np.cumsum([0] + [len(s) for s in sentences])
        sentences = [s[draws[a:b] < keep_p[s]] for s, a, b in
                     zip(sentences, offsets[:-1], offsets[1:])]
    centre, context = [], []
    for s in sentences:
        for d in range(1, window + 1):   # both directions: (s[i], s[i+d]) and (s[i+d], s[i])
            centre += [s[:-d], s[d:]]
            context += [s[d:], s[:-d]]
    if not centre:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return np.concatenate(centre).astype(np.int32), np.concatenate(context).astype(np.int32)


def unigram_probs(counts, power: float = 0.75):
    """The negative-sampling distribution: P(w) ∝ count(w)^power (0.75 as word2vec)."""
    counts = np.asarray(counts, np.float64)
    if counts.ndim != 1 or np.any(counts < 0) or not np.sum(counts) > 0:
        raise ValueError(f"unigram_probs: counts must be non-negative (V,) with a positive "
                         f"sum, got shape {counts.shape}.")
    p = counts ** power
    return p / p.sum()


def skipgram_batches(centre, context, probs, *, negatives: int, batch_size: int, key):
    """Batches for `jl.fit`: a callable returning one epoch of ((c, o, neg), targets).

    Call e (counting from 0) shuffles the pairs with fold_in(key, 2e) and draws
    negatives (P, K) from `probs` with fold_in(key, 2e + 1), so every epoch sees new
    negatives and the run is reproducible from `key`. A negative may equal the context
    word (word2vec.c redraws it; with a vocabulary of hundreds the difference is small).
    The last partial batch is dropped, so each step has one shape.

    Yields: x = (centre (B,), context (B,), negatives (B, K)) int32, targets (B, 1 + K)
    float32 with column 0 one and the rest zero.
    """
    centre, context = np.asarray(centre, np.int32), np.asarray(context, np.int32)
    check_positive_int("skipgram_batches", "negatives", negatives)
    check_positive_int("skipgram_batches", "batch_size", batch_size)
    if centre.shape != context.shape or centre.ndim != 1 or len(centre) < batch_size:
        raise ValueError(f"skipgram_batches: centre and context must be (P,) with P >= "
                         f"batch_size={batch_size}, got {centre.shape} and {context.shape}.")
    logits = jnp.log(jnp.asarray(probs, jnp.float32))
    targets = np.zeros((batch_size, 1 + negatives), np.float32)
    targets[:, 0] = 1.0
    epoch = [0]

    def one_epoch():
        e, epoch[0] = epoch[0], epoch[0] + 1
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 2 * e), len(centre)))
        neg = np.asarray(jax.random.categorical(jax.random.fold_in(key, 2 * e + 1), logits,
                                                shape=(len(centre), negatives)), np.int32)
        for i in range(len(centre) // batch_size):
            idx = order[i * batch_size:(i + 1) * batch_size]
            yield (centre[idx], context[idx], neg[idx]), targets

    return one_epoch


def nearest_neighbours(embeddings, query_ids, k: int = 5):
    """The k words of highest cosine similarity to each query word (the word itself left out).

    cos(a, b) = a · b / (|a| |b|) over the rows of `embeddings` (V, d), e.g.
    params["centre"]["embeddings"]. Returns (ids (Q, k) int, cosines (Q, k)), best first.
    """
    e = np.asarray(embeddings, np.float64)
    unit = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    q = np.atleast_1d(np.asarray(query_ids))
    cos = unit[q] @ unit.T                        # (Q, V)
    cos[np.arange(len(q)), q] = -np.inf           # not its own neighbour
    ids = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(cos, ids, 1)
