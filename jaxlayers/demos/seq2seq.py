"""LSTM encoder + LSTM decoder with Bahdanau (additive) attention
(`jl.models.seq2seq_attention`) translates dates written in words into ISO dates.

Data (generated with a seeded NumPy RNG, no download): a date drawn uniformly by year
(1900-2099), month, then day of that month (leap years by the Gregorian rule), written in
one of `FORMATS`, e.g. for 1987-03-03:

    "the third of march 1987"   "march 3, 1987"   "3 mar 1987"   "march the third, 1987"

Tokens: the source is word-level for words (month names, their three-letter
abbreviations, the ordinals "first" ... "thirty-first" as one token each, "the", "of",
",") and digit-level for numbers ("1987" is the four tokens 1 9 8 7), so a year is copied
digit by digit and a day in figures is one or two tokens; at most `SRC_LEN` tokens,
padded with id 0 at the end. The target is character-level: the 10 characters of
"YYYY-MM-DD" over the vocabulary 0-9 and "-" (ids 2-12; 0 is padding, 1 the start id the
decoder reads first). Held-out dates are drawn from another seed, and any whose source
text also occurs in the training set is dropped.

The attention heatmap: the decoder's attention weights (output character x source token)
for one held-out example, the model fed its own greedy output.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlayers as jl
from jaxlayers.demos.reverse import (exact_match, held_out, plot_attention, plot_history,
                                     sequence_loss, shift_right)

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
ABBREVIATIONS = tuple(m[:3] for m in MONTHS)
_UNITS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
          "ninth")
_TEENS = ("tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth",
          "sixteenth", "seventeenth", "eighteenth", "nineteenth")
ORDINALS = (_UNITS + _TEENS + ("twentieth",) + tuple(f"twenty-{u}" for u in _UNITS)
            + ("thirtieth", "thirty-first"))      # ORDINALS[d - 1] is day d
FORMATS = ("the {ordinal} of {month} {year}", "{month} {day}, {year}",
           "{day} {abbr} {year}", "{month} the {ordinal}, {year}")
FIRST_YEAR, LAST_YEAR = 1900, 2099

SRC_WORDS = (("the", "of", ",") + MONTHS + ABBREVIATIONS + ORDINALS
             + tuple("0123456789"))
SRC_INDEX = {w: i + 1 for i, w in enumerate(SRC_WORDS)}   # 0 is padding
SRC_VOCAB = len(SRC_WORDS) + 1
SRC_LEN = 8            # the longest format: "the twenty-third of september 1 9 8 7"
TGT_CHARS = "0123456789-"
START = 1
TGT_INDEX = {c: i + 2 for i, c in enumerate(TGT_CHARS)}   # 0 padding, 1 START
TGT_VOCAB = len(TGT_CHARS) + 2
TGT_LEN = 10           # "YYYY-MM-DD"


def days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def render(year: int, month: int, day: int, fmt: int) -> str:
    """The date (month 1-12, day 1-31) written in FORMATS[fmt]."""
    return FORMATS[fmt].format(ordinal=ORDINALS[day - 1], month=MONTHS[month - 1],
                               abbr=ABBREVIATIONS[month - 1], day=day, year=year)


def iso(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}"


def make_dates(n: int, seed: int):
    """n random dates: a list of (text, iso) pairs, e.g. ("march 3, 1987", "1987-03-03").

    Year uniform in FIRST_YEAR..LAST_YEAR, month uniform, day uniform among that month's
    days, format uniform among FORMATS.
    """
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        year = int(rng.integers(FIRST_YEAR, LAST_YEAR + 1))
        month = int(rng.integers(1, 13))
        day = int(rng.integers(1, days_in_month(year, month) + 1))
        pairs.append((render(year, month, day, int(rng.integers(len(FORMATS)))),
                      iso(year, month, day)))
    return pairs


def tokenize(text: str) -> list[str]:
    """Words split on spaces, "," a token of its own, numbers split into digits."""
    tokens = []
    for word in text.replace(",", " , ").split():
        tokens.extend(word if word.isdigit() else [word])
    return tokens


def encode_source(texts) -> np.ndarray:
    """(n, SRC_LEN) int32 token ids, padded with 0 at the end."""
    ids = np.zeros((len(texts), SRC_LEN), np.int32)
    for i, text in enumerate(texts):
        tokens = [SRC_INDEX[t] for t in tokenize(text)]
        ids[i, :len(tokens)] = tokens
    return ids


def encode_target(isos) -> np.ndarray:
    """(n, TGT_LEN) int32 character ids of the ISO dates."""
    return np.array([[TGT_INDEX[c] for c in s] for s in isos], np.int32)


def decode_target(ids) -> list[str]:
    chars = {i: c for c, i in TGT_INDEX.items()}
    return ["".join(chars.get(int(i), "?") for i in row) for row in np.asarray(ids)]


def make_data(n: int, seed: int):
    """(src (n, SRC_LEN), tgt_in (n, TGT_LEN), tgt (n, TGT_LEN)) int32, and the texts."""
    texts, isos = zip(*make_dates(n, seed))
    tgt = encode_target(isos)
    return encode_source(texts), shift_right(tgt, START), tgt, np.array(texts)


def source_labels(ids) -> list[str]:
    """The tokens of one encoded source, padding left out."""
    return [SRC_WORDS[i - 1] for i in np.asarray(ids) if i]


def run(*, epochs: int = 8, out: str = "outputs", seed: int = 0, n_train: int = 6000,
        n_test: int = 1000, batch_size: int = 100, learning_rate: float = 1e-2,
        clip_norm: float = 1.0, embed_dim: int = 32, units: int = 64,
        progress: bool = True, verbose: bool = True) -> dict:
    """Train the attention seq2seq with `jl.fit` (teacher forcing, Adam), report the
    held-out exact match of greedy decoding, save the loss curves `out/seq2seq.png` and
    the attention heatmap `out/seq2seq_attention.png`.

    Returns {"exact_match", "token_accuracy", "history", "examples": [(text, predicted,
    true)] for the first held-out dates, "example": {"source" (tokens), "output",
    "weights" (T, S)}, "paths", "seconds"}.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"seq2seq: epochs must be an int >= 1, got {epochs!r}.")
    start = time.perf_counter()
    src, tgt_in, tgt, _ = make_data(n_train, seed)
    te_src, te_in, te_tgt, te_text = held_out(src, n_test, seed + 1_000_003, make_data)

    net = jl.models.seq2seq_attention(SRC_VOCAB, TGT_VOCAB, embed_dim=embed_dim, units=units)
    key_init, key_fit = jax.random.split(jax.random.key(seed))
    params, state = jax.jit(net.init, static_argnums=1)(  # jitted: ~2x faster on CPU
        key_init, (jax.ShapeDtypeStruct((batch_size, SRC_LEN), jnp.int32),
                   jax.ShapeDtypeStruct((batch_size, TGT_LEN), jnp.int32)))
    optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))
    ts, history = jl.fit(
        net, (params, state), ((src, tgt_in), tgt), loss=sequence_loss(TGT_VOCAB),
        metrics=("loss", "accuracy"),
        optimizer=optimizer, epochs=epochs, batch_size=batch_size, key=key_fit,
        validation_data=((te_src, te_in), te_tgt), progress=progress, verbose=verbose)
    params, state = ts.params, ts.state

    pred = np.asarray(jl.models.greedy_decode(net, params, state, te_src, TGT_LEN, START))
    exact = exact_match(pred, te_tgt)
    predicted, true = decode_target(pred), decode_target(te_tgt)

    i = int(np.flatnonzero(np.char.startswith(te_text, "the "))[0])  # an ordinal example
    (_, weights), _ = jax.jit(lambda p, s, x: net.apply(p, s, x, return_attention=True))(
        params, state, (te_src[i:i + 1], shift_right(pred[i:i + 1], START)))
    tokens = source_labels(te_src[i])
    weights = np.asarray(weights[0, :, :len(tokens)])           # (T, S) without padding
    example = {"text": str(te_text[i]), "source": tokens, "output": predicted[i],
               "weights": weights}
    paths = (plot_history(history, os.path.join(out, "seq2seq.png"),
                          "LSTM seq2seq + attention, dates"),
             plot_attention(weights[None], tokens, list(predicted[i]),
                            os.path.join(out, "seq2seq_attention.png"),
                            [f'"{te_text[i]}" -> {predicted[i]}'],
                            "additive attention on a held-out date"))
    seconds = time.perf_counter() - start
    examples = list(zip(te_text[:6].tolist(), predicted[:6], true[:6]))
    if verbose:
        print(f"seq2seq: held-out exact match {exact:.4f} ({n_test} dates, none of their "
              f"texts in the training set), per-token accuracy "
              f"{history['val_accuracy'][-1]:.4f}; {seconds:.1f} s")
        for text, p, t in examples:
            print(f"  {text!r:38} -> {p}" + ("" if p == t else f"  (true {t})"))
        for path in paths:
            print(f"saved {path}")
    return {"exact_match": exact, "token_accuracy": history["val_accuracy"][-1],
            "history": history, "examples": examples, "example": example, "paths": paths,
            "seconds": seconds}
