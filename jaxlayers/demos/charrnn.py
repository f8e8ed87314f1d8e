"""A character-level LSTM language model trained with truncated BPTT (seed 004 part 03).

Text (no download): the Zen of Python (the `this` module, decoded) followed by the source of
the standard library's `textwrap` and `heapq` modules, as `inspect.getsource` returns them
for the running Python (~44 KB; deterministic for a given Python version). The last 10% is
held out.

Truncated BPTT: the training text is cut into `batch_size` contiguous streams, and each
stream into chunks of `chunk` characters. Chunk k of every stream is one batch; the LSTM's
final (h, c) on chunk k is the `initial_state` of chunk k + 1, passed through
`lax.stop_gradient`, so the state carries information across the border while gradients
stop there (BPTT over `chunk` steps, O(chunk) memory). The state is reset to zeros at the
start of each epoch.
"""

from __future__ import annotations

import codecs
import functools
import inspect
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlayers as jl
from jaxlayers.demos import missing_extra


def load_text() -> str:
    """The Zen of Python and the source of textwrap and heapq (stdlib, no download)."""
    import heapq
    import textwrap

    _import_this_quietly()  # importing `this` prints the Zen; we decode its string instead
    import this

    zen = codecs.decode(this.s, "rot13")
    return "\n\n".join([zen, inspect.getsource(textwrap), inspect.getsource(heapq)])


def _import_this_quietly():
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import this  # noqa: F401


def char_model(vocab: int, dim: int = 32, units: int = 128) -> jl.Layer:
    """Embedding(V, dim) -> LSTM(units) -> Dense(V) logits, with the LSTM's carry in and out.

    A `jl.compose` model: apply(params, state, ids (N, T), carry=(h, c) or None) ->
    ((logits (N, T, V), (h, c)), state). params {"embed", "lstm", "head"}.
    """
    def forward(m, ids, *, carry=None):
        y, h, c = m.lstm(m.embed(ids), initial_state=carry)
        return m.head(y), (h, c)

    return jl.compose(forward, embed=jl.Embedding(vocab, dim),
                      lstm=jl.LSTM(units, return_sequences=True, return_state=True),
                      head=jl.Dense(vocab))


# The model's state: its children keep none (the carry travels as an input and output).
_STATE = {"embed": {}, "lstm": {}, "head": {}}


def chunk_loss(net: jl.Layer, params, x, y, carry):
    """Mean cross-entropy (nats per character) of one chunk, and the final (h, c)."""
    (logits, carry), _ = net.apply(params, _STATE, x, carry=carry)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.mean(ce), carry


def _zero_carry(net: jl.Layer, params, n: int):
    units = params["lstm"]["recurrent_kernel"].shape[0]
    return (jnp.zeros((n, units)), jnp.zeros((n, units)))


def streams(ids: np.ndarray, batch_size: int, chunk: int):
    """Cut ids into `batch_size` contiguous streams -> (x, y) of shape (K, batch_size, chunk):
    chunk k of every stream, with y the next characters."""
    per = (len(ids) - 1) // batch_size // chunk * chunk
    if per == 0:
        raise ValueError(f"charrnn: text of {len(ids)} characters is too short for "
                         f"batch_size={batch_size} x chunk={chunk}.")
    starts = np.arange(batch_size) * per
    idx = starts[:, None] + np.arange(per)[None, :]  # (B, per)
    x, y = ids[idx], ids[idx + 1]
    k = per // chunk
    return (x.reshape(batch_size, k, chunk).transpose(1, 0, 2),
            y.reshape(batch_size, k, chunk).transpose(1, 0, 2))


def _epoch_fn(net: jl.Layer, optimizer):
    """One jitted pass over all chunks: a lax.scan carrying params, opt_state and (h, c)."""

    def step(carry, batch):
        params, opt_state, state = carry
        x, y = batch
        state = jax.tree.map(jax.lax.stop_gradient, state)  # truncate BPTT at the border
        (loss, state), grads = jax.value_and_grad(
            lambda p: chunk_loss(net, p, x, y, state), has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, state), loss

    @jax.jit
    def epoch(params, opt_state, xs, ys):
        carry = (params, opt_state, _zero_carry(net, params, xs.shape[1]))
        (params, opt_state, _), losses = jax.lax.scan(step, carry, (xs, ys))
        return params, opt_state, losses

    return epoch


def _eval_fn(net: jl.Layer):
    """Mean nats per character over all chunks, the state carried (no gradients)."""

    @jax.jit
    def evaluate(params, xs, ys):
        def step(state, batch):
            loss, state = chunk_loss(net, params, batch[0], batch[1], state)
            return state, loss

        _, losses = jax.lax.scan(step, _zero_carry(net, params, xs.shape[1]), (xs, ys))
        return jnp.mean(losses)

    return evaluate


def sample(net: jl.Layer, params, prompt_ids, length: int, temperature: float, key):
    """Feed `prompt_ids` (1-D, non-empty), then draw `length` characters one at a time from
    softmax(logits / temperature). Returns an int array (length,)."""
    if temperature <= 0:
        raise ValueError(f"charrnn: temperature must be > 0, got {temperature}.")
    return _sampler(net, length)(params, jnp.asarray(prompt_ids, jnp.int32)[None, :],
                                 jnp.float32(temperature), key)


@functools.lru_cache(maxsize=8)
def _sampler(net, length):
    """One compiled sampler per (model, length)."""
    @jax.jit
    def draw(params, prompt, temperature, key):
        (logits, carry), _ = net.apply(params, _STATE, prompt)

        def step(state, k):
            last_logits, carry = state
            nxt = jax.random.categorical(k, last_logits / temperature)  # (1,)
            (logits, carry), _ = net.apply(params, _STATE, nxt[:, None], carry=carry)
            return (logits[:, -1], carry), nxt[0]

        _, out = jax.lax.scan(step, (logits[:, -1], carry), jax.random.split(key, length))
        return out

    return draw


def plot(train_bpc, val_bpc, unigram_bpc: float, path: str, chunks_per_epoch: int) -> str:
    """Training bits per character per chunk, held-out bpc per epoch, unigram baseline."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise missing_extra(exc) from exc
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(1, len(train_bpc) + 1), train_bpc, lw=0.8, alpha=0.7,
            label="training bpc (per chunk)")
    ax.plot(np.arange(1, len(val_bpc) + 1) * chunks_per_epoch, val_bpc, "s-",
            label="held-out bpc (per epoch)")
    ax.axhline(unigram_bpc, color="C3", ls="--", label=f"unigram: {unigram_bpc:.2f} bpc")
    ax.set(xlabel="step (chunk)", ylabel="bits per character",
           title="Char-LSTM, truncated BPTT")
    ax.legend()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def run(*, epochs: int = 12, out: str = "outputs", seed: int = 0, units: int = 128,
        dim: int = 32, batch_size: int = 32, chunk: int = 50, learning_rate: float = 1e-2,
        clip_norm: float = 1.0, sample_length: int = 200, temperatures=(0.5, 1.0),
        prompt: str = "def ", progress: bool = True, verbose: bool = True) -> dict:
    """Train with truncated BPTT, print held-out bits per character against the unigram
    baseline and samples at each temperature, save `out/charrnn.png`.

    Unigram baseline: the held-out text's cross-entropy under the training text's character
    frequencies (add-one smoothed), in bits. Held-out bpc is computed with the state
    carried across chunks, as in training.

    Returns {"bpc", "unigram_bpc", "train_bpc", "val_bpc", "samples": {temperature: text},
    "text_chars", "vocab", "path", "seconds", plus "net", "params", "chars"} (the last
    three for `sample`).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"charrnn: epochs must be an int >= 1, got {epochs!r}.")
    start = time.perf_counter()
    text = load_text()
    chars = sorted(set(text))
    index = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([index[ch] for ch in text], np.int32)
    split = int(len(ids) * 0.9)
    train_ids, val_ids = ids[:split], ids[split:]
    xs, ys = streams(train_ids, batch_size, chunk)
    val_x, val_y = streams(val_ids, 4, chunk)

    counts = np.bincount(train_ids, minlength=len(chars)) + 1.0
    unigram = -np.log2(counts / counts.sum())
    unigram_bpc = float(np.mean(unigram[val_y.ravel()]))

    net = char_model(len(chars), dim, units)
    key_init, key_sample = jax.random.split(jax.random.key(seed))
    params, _ = net.init(key_init, jax.ShapeDtypeStruct((batch_size, chunk), jnp.int32))
    optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))
    opt_state = optimizer.init(params)
    epoch_fn, evaluate = _epoch_fn(net, optimizer), _eval_fn(net)

    bar = None
    if progress and verbose:
        try:
            from tqdm import tqdm
            bar = tqdm(total=epochs * len(xs), desc="charrnn", unit="chunk",
                       dynamic_ncols=True, smoothing=0)
        except ImportError:
            pass
    train_bpc, val_bpc = [], []
    for e in range(epochs):
        params, opt_state, losses = epoch_fn(params, opt_state, xs, ys)
        train_bpc.extend((np.asarray(losses) / math.log(2)).tolist())
        val_bpc.append(float(evaluate(params, val_x, val_y)) / math.log(2))
        if bar is not None:
            bar.update(len(xs))
            bar.set_postfix_str(f"train {np.mean(train_bpc[-len(xs):]):.3f} bpc, "
                                f"held-out {val_bpc[-1]:.3f} bpc", refresh=False)
        elif verbose:
            print(f"epoch {e + 1}/{epochs} - train {np.mean(train_bpc[-len(xs):]):.3f} bpc "
                  f"- held-out {val_bpc[-1]:.3f} bpc", flush=True)
    if bar is not None:
        bar.close()

    prompt_ids = [index[ch] for ch in prompt if ch in index] or [0]
    samples = {}
    for i, t in enumerate(temperatures):
        drawn = sample(net, params, prompt_ids, sample_length, t,
                       jax.random.fold_in(key_sample, i))
        samples[t] = prompt + "".join(chars[j] for j in np.asarray(drawn))
    path = plot(train_bpc, val_bpc, unigram_bpc, os.path.join(out, "charrnn.png"), len(xs))
    seconds = time.perf_counter() - start
    if verbose:
        print(f"charrnn: held-out {val_bpc[-1]:.3f} bits/char, unigram baseline "
              f"{unigram_bpc:.3f} bits/char ({len(text)} characters, {len(chars)} distinct, "
              f"{epochs} epochs of {len(xs)} chunks of {batch_size} x {chunk}); {seconds:.1f} s")
        for t, s in samples.items():
            print(f"--- sample, temperature {t} ---\n{s}")
        print(f"saved {path}")
    return {"bpc": val_bpc[-1], "unigram_bpc": unigram_bpc, "train_bpc": train_bpc,
            "val_bpc": val_bpc, "samples": samples, "text_chars": len(text),
            "vocab": len(chars), "path": path, "seconds": seconds,
            "net": net, "params": params, "chars": chars}
