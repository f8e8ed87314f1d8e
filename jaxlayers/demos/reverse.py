"""A small encoder-decoder Transformer (`jl.models.transformer`) learns to reverse digit
sequences, trained with teacher forcing by `jl.fit`, decoded greedily.

Data (generated, no download): sequences of `LENGTH` digits drawn uniformly from 1-9 (id 0
is padding), the target the same digits in reverse order. The decoder reads the target
shifted right, `START` first (teacher forcing); held-out sequences are drawn from another
seed, and any that also occurs in the training set is dropped, so none was seen.

The attention heatmap: the decoder's cross-attention weights (target step x source
position, averaged over the heads) of each layer, for one held-out sequence, read with
`return_attention=True` while the model is fed its own greedy output. Reversal reads
source position LENGTH - 1 - t at step t: the anti-diagonal.
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
from jaxlayers.demos import _plots, missing_extra

LENGTH = 6
START = 10            # target vocabulary: padding 0, digits 1-9, START
SRC_VOCAB, TGT_VOCAB = 10, 11


def make_data(n: int, seed: int):
    """(src (n, LENGTH), tgt_in (n, LENGTH), tgt (n, LENGTH)) int32: tgt = src reversed,
    tgt_in = START then tgt[:, :-1] (the target shifted right)."""
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 10, (n, LENGTH)).astype(np.int32)
    tgt = src[:, ::-1].copy()
    return src, shift_right(tgt, START), tgt


def shift_right(tgt: np.ndarray, start: int) -> np.ndarray:
    """The decoder's teacher-forced input: `start`, then tgt without its last token."""
    tgt = np.asarray(tgt, np.int32)
    return np.concatenate([np.full((len(tgt), 1), start, np.int32), tgt[:, :-1]], axis=1)


def held_out(train_src: np.ndarray, n: int, seed: int, draw=None):
    """n fresh samples from `draw(m, seed)` (default make_data) whose source rows are not
    in train_src: at most a few extra draws are needed, as the space is large."""
    draw = draw or make_data
    seen = {row.tobytes() for row in np.asarray(train_src)}
    parts, have, m = [], 0, n
    for attempt in range(8):
        batch = draw(m + m // 4 + 8, seed + attempt)
        keep = np.array([row.tobytes() not in seen for row in batch[0]])
        parts.append(tuple(a[keep] for a in batch))
        have += int(keep.sum())
        if have >= n:
            break
    else:
        raise ValueError(f"held_out: could not draw {n} samples absent from the training set.")
    return tuple(np.concatenate([p[i] for p in parts])[:n] for i in range(len(parts[0])))


def model(d_model: int = 32, num_heads: int = 4, num_layers: int = 2,
          ffn_dim: int = 64) -> jl.Layer:
    """jl.models.transformer(10, 11, max_len=8, ...): (src, tgt_in) -> logits (N, T, 11)."""
    return jl.models.transformer(SRC_VOCAB, TGT_VOCAB, max_len=8, d_model=d_model,
                                 num_heads=num_heads, num_layers=num_layers, ffn_dim=ffn_dim)


def sequence_loss(vocab: int):
    """Mean cross-entropy over every target token: loss(logits (N, T, V), tgt (N, T))."""
    ce = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)

    def loss(logits, tgt):
        return ce(logits.reshape(-1, vocab), tgt.reshape(-1))

    return loss


def exact_match(pred, tgt) -> float:
    """Fraction of sequences whose every token is right."""
    return float(np.mean(np.all(np.asarray(pred) == np.asarray(tgt), axis=1)))


def plot_history(history, path: str, title: str) -> str:
    """Cross-entropy per epoch (training and held-out, log scale) and per-token accuracy."""
    return _plots.plot_history(history, path, title=title, held_out="held-out", log_loss=True,
                               loss_label="cross-entropy per token (nats)",
                               accuracy_label="per-token accuracy (teacher forced)",
                               accuracy_title="token accuracy", ylim=(0, 1.02))


def plot_attention(weights, src_labels, out_labels, path: str, titles, suptitle: str) -> str:
    """Heatmaps of weights (panels, T, S): rows the output tokens, columns the source ones."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise missing_extra(exc) from exc
    weights = np.asarray(weights)
    panels, t, s = weights.shape
    fig = Figure(figsize=(1.2 + panels * (0.5 * s + 1.4), 1.6 + 0.4 * t), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, panels))
    for ax, w, title in zip(axes, weights, titles):
        image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(s), src_labels, rotation=90 if max(map(len, src_labels)) > 2 else 0)
        ax.set_yticks(range(t), out_labels)
        ax.set(xlabel="source token", ylabel="output token", title=title)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="attention weight")
    fig.suptitle(suptitle)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def run(*, epochs: int = 8, out: str = "outputs", seed: int = 0, n_train: int = 4000,
        n_test: int = 500, batch_size: int = 100, learning_rate: float = 3e-3,
        progress: bool = True, verbose: bool = True) -> dict:
    """Train the transformer with `jl.fit` (Adam, teacher forcing), report the held-out
    exact match of greedy decoding (`jl.models.greedy_decode`), save the loss curves
    `out/reverse.png` and the cross-attention heatmap `out/reverse_attention.png`.

    Returns {"exact_match", "token_accuracy", "history", "example": {"source", "output",
    "weights" (layers, heads, T, S)}, "anti_diagonal", "paths", "seconds"}: anti_diagonal
    is, per decoder layer, the fraction of held-out (sequence, step) pairs whose
    head-averaged cross-attention peaks on the mirrored source position.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"reverse: epochs must be an int >= 1, got {epochs!r}.")
    start = time.perf_counter()
    src, tgt_in, tgt = make_data(n_train, seed)
    te_src, te_in, te_tgt = held_out(src, n_test, seed + 1_000_003)

    net = model()
    key_init, key_fit = jax.random.split(jax.random.key(seed))
    spec = jax.ShapeDtypeStruct((batch_size, LENGTH), jnp.int32)
    params, state = jax.jit(net.init, static_argnums=1)(key_init, (spec, spec))
    ts, history = jl.fit(
        net, (params, state), ((src, tgt_in), tgt), loss=sequence_loss(TGT_VOCAB),
        metrics=("loss", "accuracy"),
        optimizer=optax.adam(learning_rate), epochs=epochs, batch_size=batch_size,
        key=key_fit, validation_data=((te_src, te_in), te_tgt), progress=progress,
        verbose=verbose)
    params, state = ts.params, ts.state

    pred = np.asarray(jl.models.greedy_decode(net, params, state, te_src, LENGTH, START))
    exact = exact_match(pred, te_tgt)
    # the cross-attention the model uses while it decodes: fed its own output
    (_, weights), _ = jax.jit(functools.partial(net.apply, return_attention=True))(
        params, state, (te_src, shift_right(pred, START)))
    mean_heads = np.asarray(weights).mean(axis=2)                  # (N, layers, T, S)
    mirror = LENGTH - 1 - np.arange(LENGTH)
    anti_diagonal = np.mean(np.argmax(mean_heads, -1) == mirror, axis=(0, 2)).tolist()

    i = 0
    example = {"source": te_src[i].tolist(), "output": pred[i].tolist(),
               "weights": np.asarray(weights[i])}
    paths = (plot_history(history, os.path.join(out, "reverse.png"),
                          "Transformer, digit reversal"),
             plot_attention(mean_heads[i], [str(d) for d in te_src[i]],
                            [str(d) for d in pred[i]],
                            os.path.join(out, "reverse_attention.png"),
                            [f"decoder layer {k + 1} (mean of heads)"
                             for k in range(mean_heads.shape[1])],
                            "cross-attention on a held-out sequence"))
    seconds = time.perf_counter() - start
    if verbose:
        print(f"reverse: held-out exact match {exact:.4f} ({n_test} sequences of {LENGTH} "
              f"digits, none in the training set), per-token accuracy "
              f"{history['val_accuracy'][-1]:.4f}; {seconds:.1f} s")
        print(f"example: {''.join(map(str, example['source']))} -> "
              f"{''.join(map(str, example['output']))}")
        print("cross-attention peaks on the mirrored position: " + ", ".join(
            f"layer {k + 1} {a:.2f}" for k, a in enumerate(anti_diagonal)))
        for path in paths:
            print(f"saved {path}")
    return {"exact_match": exact, "token_accuracy": history["val_accuracy"][-1],
            "history": history, "example": example, "anti_diagonal": anti_diagonal,
            "paths": paths, "seconds": seconds}
