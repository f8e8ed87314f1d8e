"""jl.models.word2vec: skip-gram with negative sampling, on a synthetic corpus and the shipped text.

The shipped text is the charrnn demo's (the Zen of Python and the source of the standard
library's textwrap and heapq modules), read at word level, lower-cased, with a vocabulary
of its 300 most frequent words.
"""

import inspect
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlayers as jl

M = jl.models
K = 5  # negatives per pair


def _words(text):
    return re.findall(r"[a-z]+", text.lower())


def _spec(batch, negatives=K):
    ids = jax.ShapeDtypeStruct((batch,), jnp.int32)
    return ids, ids, jax.ShapeDtypeStruct((batch, negatives), jnp.int32)


def _random_params(model, batch, seed=0):
    """Embeddings drawn N(0, 0.5): the builder's zero context table would hide errors."""
    params, state = model.init(jax.random.key(seed), _spec(batch))
    k1, k2 = jax.random.split(jax.random.key(seed + 1))
    shape = params["centre"]["embeddings"].shape
    return {"centre": {"embeddings": 0.5 * jax.random.normal(k1, shape)},
            "context": {"embeddings": 0.5 * jax.random.normal(k2, shape)}}, state


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_scores_and_sgns_loss_match_numpy():
    model = M.word2vec(7, 3)
    params, state = _random_params(model, 4)
    centre = jnp.array([0, 3, 6, 3], jnp.int32)
    context = jnp.array([1, 2, 0, 3], jnp.int32)
    negatives = jnp.array([[2, 4, 5, 6, 0], [0, 0, 1, 5, 6], [3, 3, 3, 2, 1], [4, 5, 6, 0, 1]],
                          jnp.int32)
    scores, _ = model.apply(params, state, (centre, context, negatives))
    assert scores.shape == (4, 1 + K)
    v = np.asarray(params["centre"]["embeddings"])[np.asarray(centre)]
    u = np.asarray(params["context"]["embeddings"])
    pos = np.sum(u[np.asarray(context)] * v, axis=1)
    neg = np.einsum("nkd,nd->nk", u[np.asarray(negatives)], v)
    np.testing.assert_allclose(scores[:, 0], pos, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[:, 1:], neg, rtol=1e-5, atol=1e-6)

    targets = jnp.zeros((4, 1 + K)).at[:, 0].set(1.0)
    expected = -np.log(_np_sigmoid(pos)) - np.sum(np.log(_np_sigmoid(-neg)), axis=1)
    np.testing.assert_allclose(M.word2vec_loss(scores, targets, reduction="none"), expected,
                               rtol=1e-5)
    np.testing.assert_allclose(M.word2vec_loss(scores, targets), expected.mean(), rtol=1e-5)
    np.testing.assert_allclose(M.word2vec_loss(scores, targets, reduction="sum"),
                               expected.sum(), rtol=1e-5)
    # the builder's own init: zero context vectors, so every pair starts at (1 + K) log 2
    p0, _ = model.init(jax.random.key(0), _spec(4))
    s0, _ = model.apply(p0, state, (centre, context, negatives))
    np.testing.assert_allclose(M.word2vec_loss(s0, targets), (1 + K) * np.log(2), rtol=1e-6)


def test_sgns_gradient_matches_finite_differences():
    """Repeated ids (a word as centre, context and negative at once) check the scatter-adds."""
    model = M.word2vec(6, 3)
    params, state = _random_params(model, 3)
    ids = (jnp.array([0, 2, 2], jnp.int32), jnp.array([2, 0, 5], jnp.int32),
           jnp.array([[1, 2, 3, 4, 0], [0, 0, 5, 5, 2], [1, 1, 4, 3, 2]], jnp.int32))
    targets = jnp.zeros((3, 1 + K)).at[:, 0].set(1.0)

    def loss(p):
        return M.word2vec_loss(model.apply(p, state, ids)[0], targets)

    report = jl.gradcheck(loss, params)
    assert report.ok, report
    assert {leaf.path for leaf in report.leaves} == {"args/0/centre/embeddings",
                                                     "args/0/context/embeddings"}


def test_data_helpers():
    words, counts, encoded = M.build_vocab([["b", "a", "b", "c"], ["a", "b", "d"]], 3)
    assert words == ["b", "a", "c"] and counts.tolist() == [3, 2, 1]  # c before d: first seen
    assert [e.tolist() for e in encoded] == [[0, 1, 0, 2], [1, 0, -1]]
    # out-of-vocabulary ids are dropped before windowing; no pair crosses a sentence
    centre, context = M.skipgram_pairs([[5, 6, -1, 7], [8, 9]], window=2)
    got = sorted(zip(centre.tolist(), context.tolist()))
    assert got == sorted([(5, 6), (6, 5), (6, 7), (7, 6), (5, 7), (7, 5), (8, 9), (9, 8)])
    # subsampling: a huge threshold keeps every word; a tiny one drops most of them
    c_all, _ = M.skipgram_pairs([[0, 1, 0, 1, 2]], 1, subsample=1e9, counts=[2, 2, 1],
                                key=jax.random.key(0))
    assert len(c_all) == 8
    c_few, _ = M.skipgram_pairs([[0] * 50 + [1] * 50], 1, subsample=1e-4, counts=[50, 50],
                                key=jax.random.key(0))
    assert len(c_few) < 40
    np.testing.assert_allclose(M.unigram_probs([16, 1, 0]), [8 / 9, 1 / 9, 0.0])
    ids, cos = M.nearest_neighbours(np.array([[1.0, 0], [2, 0.2], [0, 1], [-1, 0]]), [0, 2], 2)
    assert ids.tolist() == [[1, 2], [1, 0]]
    np.testing.assert_allclose(cos[0], [2 / np.sqrt(4.04), 0.0])


def test_batches_draw_unigram_negatives_with_the_key():
    probs = M.unigram_probs([100, 30, 10, 1])
    centre, context = np.arange(4000) % 4, (np.arange(4000) + 1) % 4
    make = M.skipgram_batches(centre, context, probs, negatives=K, batch_size=1000,
                              key=jax.random.key(3))
    first, second = list(make()), list(make())
    assert len(first) == 4
    (c, o, neg), targets = first[0]
    assert c.shape == o.shape == (1000,) and neg.shape == (1000, K)
    assert targets.tolist() == [[1.0] + [0.0] * K] * 1000
    all_neg = np.concatenate([x[2] for x, _ in first]).ravel()   # 20,000 draws
    np.testing.assert_allclose(np.bincount(all_neg, minlength=4) / all_neg.size, probs,
                               atol=0.01)
    assert not np.array_equal(first[0][0][2], second[0][0][2])    # fresh negatives per epoch
    again = list(M.skipgram_batches(centre, context, probs, negatives=K, batch_size=1000,
                                    key=jax.random.key(3))())
    np.testing.assert_array_equal(again[0][0][2], first[0][0][2])  # same key, same draws


def test_bad_hyperparameters_and_inputs_name_the_builder():
    with pytest.raises(ValueError, match="word2vec: dim"):
        M.word2vec(10, 0)
    with pytest.raises(ValueError, match="word2vec: vocab_size"):
        M.word2vec(-3, 4)
    model = M.word2vec(10, 4)
    params, state = model.init(jax.random.key(0), _spec(2))
    ids = jnp.zeros(2, jnp.int32)
    with pytest.raises(ValueError, match=r"word2vec: negatives must have rank 2"):
        model.apply(params, state, (ids, ids, ids))
    with pytest.raises(ValueError, match="word2vec: input must be the tuple"):
        model.apply(params, state, (ids, ids))
    with pytest.raises(TypeError, match="word2vec: context must be integer"):
        model.apply(params, state, (ids, ids.astype(jnp.float32), jnp.zeros((2, K), jnp.int32)))
    with pytest.raises(ValueError, match="word2vec: centre, context and negatives must share"):
        model.apply(params, state, (ids, jnp.zeros(3, jnp.int32), jnp.zeros((2, K), jnp.int32)))


def _train(sentences, vocab, dim, *, window, batch_size, epochs, lr=0.01):
    words, counts, encoded = M.build_vocab(sentences, vocab)
    centre, context = M.skipgram_pairs(encoded, window)
    model = M.word2vec(len(words), dim)
    start = model.init(jax.random.key(0), _spec(batch_size))
    data = M.skipgram_batches(centre, context, M.unigram_probs(counts), negatives=K,
                              batch_size=batch_size, key=jax.random.key(1))
    ts, history = jl.fit(model, start, data, loss=M.word2vec_loss, optimizer=optax.adam(lr),
                         epochs=epochs, key=jax.random.key(2), metrics=("loss",),
                         verbose=False, progress=False)
    return dict(words=words, centre=centre, context=context, params=ts.params,
                loss=history["loss"])


TOPICS, PER_TOPIC, FILLERS = 4, 6, ("the", "of", "and", "a")


def _synthetic_corpus(n=400, length=8, seed=0):
    """Sentences about one topic each: its 6 words, with a filler word 30% of the time."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = rng.integers(TOPICS)
        out.append([FILLERS[rng.integers(4)] if rng.random() < 0.3
                    else f"t{t}w{rng.integers(PER_TOPIC)}" for _ in range(length)])
    return out


@pytest.fixture(scope="module")
def synthetic():
    start = time.perf_counter()
    run = _train(_synthetic_corpus(), 100, 16, window=2, batch_size=128, epochs=8)
    print(f"word2vec synthetic: {len(run['centre'])} pairs, loss {run['loss'][0]:.3f} -> "
          f"{run['loss'][-1]:.3f}, {time.perf_counter() - start:.1f} s")
    return run


@pytest.fixture(scope="module")
def shipped():
    from jaxlayers.demos.charrnn import load_text

    start = time.perf_counter()
    run = _train([_words(load_text())], 300, 32, window=2, batch_size=256, epochs=8)
    print(f"word2vec shipped text: {len(run['centre'])} pairs, loss {run['loss'][0]:.3f} -> "
          f"{run['loss'][-1]:.3f}, {time.perf_counter() - start:.1f} s")
    return run


def test_synthetic_topics_are_recovered(synthetic):
    """Each topic word's 3 nearest neighbours by cosine are words of the same topic."""
    words, e = synthetic["words"], synthetic["params"]["centre"]["embeddings"]
    topic_words = [i for i, w in enumerate(words) if w not in FILLERS]
    assert len(topic_words) == TOPICS * PER_TOPIC
    ids, _ = M.nearest_neighbours(e, topic_words, 3)
    for q, row in zip(topic_words, ids):
        assert all(words[j][:2] == words[q][:2] for j in row), (words[q], [words[j] for j in row])
    assert synthetic["loss"][-1] < 0.75 * synthetic["loss"][0]


def _module_groups(words):
    """Ids of the words found only in heapq's source, and of those only in textwrap's."""
    import heapq
    import textwrap

    in_heapq = set(_words(inspect.getsource(heapq)))
    in_textwrap = set(_words(inspect.getsource(textwrap)))
    return [[i for i, w in enumerate(words) if w in a and w not in b]
            for a, b in ((in_heapq, in_textwrap), (in_textwrap, in_heapq))]


def test_shipped_text_separates_heapq_words_from_textwrap_words(shipped):
    """Words found only in heapq's source sit nearer each other than words found only in
    textwrap's (they share contexts), and observed pairs outscore random pairs."""
    words, params = shipped["words"], shipped["params"]
    groups = _module_groups(words)
    assert min(map(len, groups)) >= 30
    e = np.asarray(params["centre"]["embeddings"], np.float64)
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    cos = unit @ unit.T

    def mean_cos(a, b):
        block = cos[np.ix_(a, b)]
        return block[~np.eye(len(a), dtype=bool)].mean() if a is b else block.mean()

    within = (mean_cos(groups[0], groups[0]) + mean_cos(groups[1], groups[1])) / 2
    across = mean_cos(groups[0], groups[1])
    members = groups[0] + groups[1]
    side = np.array([0] * len(groups[0]) + [1] * len(groups[1]))
    sub = cos[np.ix_(members, members)]
    np.fill_diagonal(sub, -np.inf)
    same_side = float(np.mean(side[sub.argmax(1)] == side))
    print(f"cosine within a module {within:.3f}, across {across:.3f}; nearest neighbour "
          f"in the same module for {same_side:.0%} of {len(members)} words")
    assert within - across > 0.08 and same_side > 0.85

    # observed (centre, context) pairs against random pairs: u_o . v_c ranks them (AUC)
    u = np.asarray(params["context"]["embeddings"], np.float64)
    rng = np.random.default_rng(0)
    pick = rng.integers(len(shipped["centre"]), size=2000)
    pos = np.sum(e[shipped["centre"][pick]] * u[shipped["context"][pick]], axis=1)
    r = rng.integers(len(words), size=(2000, 2))
    neg = np.sum(e[r[:, 0]] * u[r[:, 1]], axis=1)
    auc = float(np.mean(pos[:, None] > neg[None, :]))
    print(f"AUC of observed against random pairs: {auc:.3f}")
    assert auc > 0.85
    assert shipped["loss"][-1] < 0.7 * shipped["loss"][0]


def _pca2(e):
    e = np.asarray(e, np.float64)
    centred = e - e.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def test_neighbours_printed_and_pca_plot_saved(synthetic, shipped, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    words, e = shipped["words"], shipped["params"]["centre"]["embeddings"]
    queries = ["heap", "heappush", "item", "text", "width", "indent", "better", "self"]
    ids, cos = M.nearest_neighbours(e, [words.index(w) for w in queries], 5)
    for w, row, c in zip(queries, ids, cos):
        print(f"{w:>10}: " + ", ".join(f"{words[j]} {x:.2f}" for j, x in zip(row, c)))

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5))
    sw, se = synthetic["words"], synthetic["params"]["centre"]["embeddings"]
    xy = _pca2(se)
    for t in range(TOPICS):
        pick = [i for i, w in enumerate(sw) if w.startswith(f"t{t}")]
        left.scatter(xy[pick, 0], xy[pick, 1], label=f"topic {t}")
    pick = [i for i, w in enumerate(sw) if w in FILLERS]
    left.scatter(xy[pick, 0], xy[pick, 1], marker="x", c="k", label="fillers")
    left.legend()
    left.set_title("synthetic corpus: centre vectors, PCA")
    xy = _pca2(e)
    colour = np.array(["0.7"] * len(words), dtype=object)
    for group, c in zip(_module_groups(words), ("tab:red", "tab:blue")):
        colour[group] = c
    right.scatter(xy[:, 0], xy[:, 1], s=6, c=list(colour))
    for i in range(60):  # the 60 most frequent words
        right.annotate(words[i], xy[i], fontsize=7)
    right.set_title("Zen + textwrap + heapq, 300 words, PCA\n"
                    "(red: only in heapq, blue: only in textwrap)")
    path = tmp_path / "word2vec_pca.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"saved {path}")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
