"""Many-to-one sequence classification: synthetic "reviews" with negation, read by
Embedding(mask_zero=True) -> Bidirectional(LSTM) -> Dense.

The data is generated (no download). A review is 5-40 tokens from a 50-word vocabulary:
id 0 is padding, id 1 is "not", ids 2-11 are positive words, 12-21 negative words, 22-49
neutral filler. "not" flips the polarity of the sentiment word right after it. The label is
the sign of the review's total polarity (ties are not generated). A bag-of-words model
sees how often each word occurs but not which words the "not"s precede, so it cannot
score a negated review: an order-aware model must learn the pairs.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlayers as jl
from jaxlayers.demos import missing_extra
from jaxlayers.demos._plots import plot_history

VOCAB = 50
NOT = 1
POSITIVE = tuple(range(2, 12))
NEGATIVE = tuple(range(12, 22))
NEUTRAL = tuple(range(22, 50))
MIN_LEN, MAX_LEN = 5, 40


def _review(rng: np.random.Generator):
    """One review: (token ids, label 0/1) with a nonzero total polarity."""
    while True:
        length = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        tokens, score = [], 0
        while len(tokens) < length:
            u = rng.random()
            if u < 0.55 or len(tokens) == length - 1 and u < 0.85:
                tokens.append(int(rng.choice(NEUTRAL)))
                continue
            sign = 1 if rng.random() < 0.5 else -1
            word = int(rng.choice(POSITIVE if sign > 0 else NEGATIVE))
            if rng.random() < 0.4 and len(tokens) <= length - 2:  # a negated word: 2 tokens
                tokens += [NOT, word]
                sign = -sign
            else:
                tokens.append(word)
            score += sign
        if score != 0:
            return tokens, int(score > 0)


def make_data(n: int, seed: int, pad_to: int = MAX_LEN):
    """(ids (n, pad_to) int32 padded with 0 at the end, labels (n,) int32, lengths (n,))."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, pad_to), np.int32)
    labels, lengths = np.zeros(n, np.int32), np.zeros(n, np.int32)
    for i in range(n):
        tokens, labels[i] = _review(rng)
        ids[i, :len(tokens)], lengths[i] = tokens, len(tokens)
    return ids, labels, lengths


def model(dim: int = 16, units: int = 32) -> jl.Layer:
    """Embedding(50, dim, mask_zero=True) -> Bidirectional(LSTM(units)) -> Dense(2) logits.

    The Embedding returns a jl.Masked, so both LSTM directions skip the padding: the
    forward one ends at each review's last real token, the backward one reads the review
    from that token back to the first.
    """
    return jl.serial(jl.Embedding(VOCAB, dim, mask_zero=True),
                     jl.Bidirectional(jl.LSTM(units)), jl.Dense(2))


def bag_of_words_accuracy(ids_train, y_train, ids_test, y_test) -> float:
    """Test accuracy of logistic regression on word counts (scikit-learn)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:
        raise missing_extra(exc) from exc

    def counts(ids):
        c = np.zeros((len(ids), VOCAB), np.float32)
        np.add.at(c, (np.repeat(np.arange(len(ids)), ids.shape[1]), ids.ravel()), 1.0)
        return c[:, 1:]  # drop the padding column

    clf = LogisticRegression(max_iter=2000).fit(counts(ids_train), y_train)
    return float(clf.score(counts(ids_test), y_test))


def plot(history, baselines: dict, path: str) -> str:
    """Loss and accuracy per epoch, with the baselines' accuracies as lines."""
    return plot_history(history, path, title="sentiment BiLSTM",
                        loss_label="cross-entropy", baselines=baselines, ylim=(0.45, 1.01))


def run(*, epochs: int = 8, out: str = "outputs", seed: int = 0, n_train: int = 4000,
        n_test: int = 1000, batch_size: int = 64, learning_rate: float = 1e-2,
        clip_norm: float = 1.0, progress: bool = True, verbose: bool = True) -> dict:
    """Train the BiLSTM with `jl.fit`, print test accuracy against a bag-of-words logistic
    regression and the majority class, check that padding is ignored, save
    `out/sentiment.png`.

    Padding check: the test reviews padded to 40 and to 64 tokens must give the same
    logits (to float tolerance) — the recurrent layers skip padded steps.

    Returns {"test_accuracy", "bag_of_words_accuracy", "majority_accuracy",
    "padding_max_diff", "history", "path", "seconds"}.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"sentiment: epochs must be an int >= 1, got {epochs!r}.")
    start = time.perf_counter()
    x_tr, y_tr, _ = make_data(n_train, seed)
    x_te, y_te, _ = make_data(n_test, seed + 1_000_003)
    bow = bag_of_words_accuracy(x_tr, y_tr, x_te, y_te)
    majority = float(max(np.mean(y_te), 1 - np.mean(y_te)))

    net = model()
    key_init, key_fit = jax.random.split(jax.random.key(seed))
    params, state = jax.jit(net.init, static_argnums=1)(
        key_init, jax.ShapeDtypeStruct((batch_size, MAX_LEN), jnp.int32))
    loss = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)
    optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))
    ts, history = jl.fit(
        net, (params, state), (x_tr, y_tr), loss=loss, optimizer=optimizer, epochs=epochs,
        batch_size=batch_size, key=key_fit, validation_data=(x_te, y_te),
        progress=progress, verbose=verbose)
    params, state = ts.params, ts.state
    test_accuracy = history["val_accuracy"][-1]

    predict = jax.jit(lambda p, s, x: net.apply(p, s, x)[0])
    logits = np.asarray(predict(params, state, x_te))
    longer = np.pad(x_te, ((0, 0), (0, 64 - MAX_LEN)))  # 24 more padding tokens
    padding_max_diff = float(np.max(np.abs(np.asarray(predict(params, state, longer)) - logits)))

    path = plot(history, {"bag of words": bow, "majority": majority},
                os.path.join(out, "sentiment.png"))
    seconds = time.perf_counter() - start
    if verbose:
        print(f"sentiment: test accuracy {test_accuracy:.4f}; bag-of-words logistic "
              f"regression {bow:.4f}, majority class {majority:.4f}; {seconds:.1f} s")
        print(f"padding: logits for the test reviews padded to {MAX_LEN} and to 64 tokens "
              f"differ by at most {padding_max_diff:.2e}")
        print(f"saved {path}")
    return {"test_accuracy": test_accuracy, "bag_of_words_accuracy": bow,
            "majority_accuracy": majority, "padding_max_diff": padding_max_diff,
            "history": history, "path": path, "seconds": seconds}
