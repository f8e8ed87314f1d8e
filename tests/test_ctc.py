"""jl.models.ctc_tagger + ctc_loss + ctc_greedy_decode: CTC on generated "speech".

Each utterance is 1-5 labels from {1..4}; a label becomes a run of 2-4 noisy frames of its
prototype feature vector, with 0-2 frames of noisy silence between labels (at least one
between two equal labels, else "a a" would be one long "a") and at both ends. The model
is never told where the runs are: CTC sums over every alignment.
"""

import itertools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlayers as jl

M = jl.models
LABELS, FEATURES, T, S = 4, 8, 32, 5   # labels 1..4 (0: blank), frames, max labels


def _utterances(n, seed):
    """-> (jl.Masked(x (n, T, F), mask (n, T)), labels (n, S) padded with -1, frame labels)."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(123).normal(size=(LABELS + 1, FEATURES))
    prototypes[0] = 0.0                                   # silence
    x = np.zeros((n, T, FEATURES), np.float32)
    mask = np.zeros((n, T), bool)
    labels = np.full((n, S), -1, np.int32)
    frames = np.zeros((n, T), np.int32)
    for i in range(n):
        ys = rng.integers(1, LABELS + 1, size=rng.integers(1, S + 1))
        seq = [0] * rng.integers(0, 3)
        for j, y in enumerate(ys):
            if j > 0:
                seq += [0] * rng.integers(1 if ys[j - 1] == y else 0, 3)
            seq += [int(y)] * rng.integers(2, 5)
        seq += [0] * rng.integers(0, 3)
        t = len(seq)
        x[i, :t] = prototypes[seq] + 0.6 * rng.normal(size=(t, FEATURES))
        mask[i, :t], labels[i, :len(ys)], frames[i, :t] = True, ys, seq
    return jl.Masked(x, mask), labels, frames


def _python_greedy(logits, length, blank):
    out, prev = [], None
    for t in range(length):
        best = max(range(len(logits[t])), key=lambda c: logits[t][c])
        if best != blank and best != prev:
            out.append(best)
        prev = best
    return out


def _row(labels):
    return [int(v) for v in labels if v >= 0]


def test_greedy_decode_against_a_python_loop():
    # hand-made: frame classes a a _ a b b _ _ | padding (blank 0, labels 1, 2)
    classes = [[1, 1, 0, 1, 2, 2, 0, 0, 2, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
               [2, 1, 2, 1, 0, 0, 2, 2, 1, 1]]
    logits = jax.nn.one_hot(jnp.array(classes), 3) * 4.0
    paddings = jnp.array([[0] * 8 + [1] * 2, [0] * 10, [0] * 6 + [1] * 4])
    got = M.ctc_greedy_decode(logits, paddings)
    assert got.shape == (3, 10) and got.dtype == jnp.int32
    assert [_row(r) for r in got] == [[1, 1, 2], [], [2, 1, 2, 1]]
    assert np.all(np.asarray(got[0, 3:]) == -1)
    # a Masked input reads its mask; another blank id changes what is dropped
    masked = jl.Masked(logits, paddings == 0)
    np.testing.assert_array_equal(M.ctc_greedy_decode(masked), got)
    assert _row(M.ctc_greedy_decode(logits, paddings, blank_id=1)[0]) == [0, 2, 0]
    # random logits and lengths, under jit, against the loop
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 9, 4)).astype(np.float32)
    lengths = rng.integers(0, 10, size=6)
    paddings = (np.arange(9)[None] >= lengths[:, None]).astype(np.float32)
    for blank in (0, 3):
        got = jax.jit(M.ctc_greedy_decode, static_argnums=2)(logits, paddings, blank)
        assert [_row(r) for r in got] == [_python_greedy(lg, n, blank)
                                          for lg, n in zip(logits, lengths)]


def _collapse(path, blank):
    out = [c for c, _ in itertools.groupby(path)]
    return [c for c in out if c != blank]


def _brute_force_nll(logits, length, labels, blank):
    """-log Σ over every path of `length` frames that collapses to `labels`, in float64."""
    logp = np.asarray(logits, np.float64)[:length]
    logp = logp - np.log(np.sum(np.exp(logp), axis=-1, keepdims=True))
    total = sum(math.exp(sum(logp[t, c] for t, c in enumerate(path)))
                for path in itertools.product(range(logp.shape[1]), repeat=length)
                if _collapse(path, blank) == labels)
    return -math.log(total)


def test_ctc_loss_of_the_model_against_a_sum_over_all_alignments():
    """T = 4 frames, 2 labels + blank: 81 paths each. Checks the paddings and blank id."""
    model = M.ctc_tagger(2, units=3)
    x = jax.random.normal(jax.random.key(5), (4, 4, 3))
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]], bool)
    labels = jnp.array([[1, 2], [1, 1], [2, -1], [2, 1]], jnp.int32)
    params, state = model.init(jax.random.key(0), jl.Masked(x, mask))
    out, _ = jax.jit(model.apply)(params, state, jl.Masked(x, mask))
    assert isinstance(out, jl.Masked) and out.values.shape == (4, 4, 3)
    got = M.ctc_loss(out, labels, reduction="none")
    lengths = np.asarray(mask.sum(1))
    want = [_brute_force_nll(out.values[i], lengths[i], _row(labels[i]), 0) for i in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(M.ctc_loss(out, labels), np.mean(want), rtol=1e-5)
    # sharper hand-made logits with the blank at the end (class 2; labels 0 and 1)
    logits = 3.0 * jax.random.normal(jax.random.key(6), (4, 4, 3))
    labels = jnp.array([[0, 1], [1, 1], [0, -1], [1, 0]], jnp.int32)
    got = M.ctc_loss(jl.Masked(logits, mask), labels, blank_id=2, reduction="none")
    want = [_brute_force_nll(logits[i], lengths[i], _row(labels[i]), 2) for i in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_bad_hyperparameters_and_inputs_name_the_function():
    with pytest.raises(ValueError, match="ctc_tagger: num_labels"):
        M.ctc_tagger(0)
    with pytest.raises(ValueError, match="ctc_tagger: units"):
        M.ctc_tagger(3, units=-2)
    logits = jnp.zeros((2, 5, 3))
    labels = jnp.array([[1, -1], [2, 1]], jnp.int32)
    with pytest.raises(ValueError, match="ctc_loss: blank_id must be a class index below 3"):
        M.ctc_loss(logits, labels, blank_id=3)
    with pytest.raises(ValueError, match="ctc_loss: reduction"):
        M.ctc_loss(logits, labels, reduction="batch")
    with pytest.raises(ValueError, match=r"ctc_loss: labels must be \(N, S\) with N = 2"):
        M.ctc_loss(logits, labels[:1])
    with pytest.raises(ValueError, match="ctc_greedy_decode: logits must have rank 3"):
        M.ctc_greedy_decode(logits[0])
    with pytest.raises(ValueError, match=r"ctc_greedy_decode: paddings must be \(N, T\)"):
        M.ctc_greedy_decode(logits, jnp.zeros((2, 4)))


def _levenshtein(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


def test_levenshtein():
    assert _levenshtein([1, 2, 3], [1, 3]) == 1
    assert _levenshtein([], [4, 4]) == 2
    assert _levenshtein([1, 2], [2, 1]) == 2
    assert _levenshtein([3, 1, 2, 2], [1, 2, 4, 2]) == 2


@pytest.fixture(scope="module")
def trained():
    start = time.perf_counter()
    x, labels, _ = _utterances(1024, seed=0)
    model = M.ctc_tagger(LABELS, units=16)
    spec = jl.Masked(jax.ShapeDtypeStruct((64, T, FEATURES), jnp.float32),
                     jax.ShapeDtypeStruct((64, T), jnp.bool_))
    ts, history = jl.fit(model, model.init(jax.random.key(0), spec), (x, labels),
                         loss=M.ctc_loss, optimizer=optax.adam(0.01), epochs=10,
                         batch_size=64, key=jax.random.key(1), metrics=("loss",),
                         verbose=False, progress=False)
    x, labels, frames = _utterances(200, seed=1)                     # held out
    out, _ = jax.jit(model.apply)(ts.params, ts.state, x)
    print(f"ctc_tagger: loss {history['loss'][0]:.2f} -> {history['loss'][-1]:.3f} in "
          f"{len(history['loss'])} epochs, {time.perf_counter() - start:.1f} s")
    return dict(history=history, out=out, labels=labels, frames=frames)


def test_trained_tagger_label_error_rate(trained):
    labels, history = trained["labels"], trained["history"]
    decoded = M.ctc_greedy_decode(trained["out"])
    errors = sum(_levenshtein(_row(d), _row(y)) for d, y in zip(decoded, labels))
    ler = errors / int(np.sum(labels >= 0))
    print(f"held-out label error rate {ler:.4f} (decoding nothing scores 1.0)")
    assert ler < 0.1
    assert history["loss"][-1] < 0.1 * history["loss"][0]


def test_per_frame_probabilities_plot(trained, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, labels, frames, i = trained["out"], trained["labels"], trained["frames"], 7
    n = int(out.mask[i].sum())
    probs = np.asarray(jax.nn.softmax(out.values[i, :n], axis=-1))
    decoded = _row(M.ctc_greedy_decode(out)[i])
    fig, ax = plt.subplots(figsize=(10, 4))
    for c in range(LABELS + 1):
        ax.plot(probs[:, c], marker=".", label="blank" if c == 0 else f"label {c}",
                color=f"C{c}", linestyle="--" if c == 0 else "-")
    for t in range(n):  # the generator's frame labels as shading (not seen by the model)
        if frames[i, t]:
            ax.axvspan(t - 0.5, t + 0.5, color=f"C{frames[i, t]}", alpha=0.15)
    ax.set(xlabel="frame", ylabel="p(class | frames)", ylim=(-0.02, 1.02),
           title=f"CTC tagger: target {_row(labels[i])}, greedy decoding {decoded}")
    ax.legend(loc="upper right", fontsize=8)
    path = tmp_path / "ctc_frame_probabilities.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"saved {path}")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert decoded == _row(labels[i])
