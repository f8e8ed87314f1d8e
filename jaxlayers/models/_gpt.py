"""A decoder-only causal language model (GPT-2's shape) and KV-cache decoding (`generate`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlayers._checks import check_int_at_least, check_positive_int, check_rate
from jaxlayers._compose import compose
from jaxlayers.core import Layer, layer_factory
from jaxlayers.initializers import normal
from jaxlayers.layers.attention import MultiHeadAttention
from jaxlayers.layers.blocks import Identity
from jaxlayers.layers.dropout import Dropout
from jaxlayers.layers.embedding import Embedding
from jaxlayers.layers.norm import LayerNorm
from jaxlayers.layers.positional import PositionEmbedding
from jaxlayers.layers.transformer import FeedForward

__all__ = ["gpt", "generate"]


def _drop(rate):
    return Dropout(rate) if rate > 0 else Identity()


def _block(d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> Layer:
    """Pre-LN causal block: x + Drop(MHA(LN(x))), then x + Drop(FFN(LN(x))), cache-aware."""
    def gpt_block(m, x, *, cache=None, offset=None):
        a = m.attention(m.norm1(x), cache=cache, offset=offset) if cache is not None \
            else m.attention(m.norm1(x))
        a, cache = a if cache is not None else (a, None)
        x = x + m.drop1(a)
        x = x + m.drop2(m.ffn(m.norm2(x)))
        return x if cache is None else (x, cache)

    return compose(gpt_block, norm1=LayerNorm(epsilon=1e-5),
                   attention=MultiHeadAttention(num_heads, d_model // num_heads,
                                                dropout=dropout, causal=True),
                   drop1=_drop(dropout), norm2=LayerNorm(epsilon=1e-5),
                   ffn=FeedForward(ffn_dim, activation="gelu", dropout=dropout),
                   drop2=_drop(dropout))


@layer_factory
def gpt(vocab_size: int, *, max_len: int, d_model: int, num_heads: int, num_layers: int,
        ffn_dim: int, dropout: float = 0.0) -> Layer:
    """A GPT-style decoder-only causal LM: ids (N, T) -> logits (N, T, vocab_size).

    Math: h_0 = E[ids] + P[0:T] (token embedding E, learned positions P), then
    num_layers pre-LN blocks h <- h + Drop(MHA_causal(LN(h))), h <- h + Drop(FFN(LN(h)))
    (FFN with exact GELU, as GPT-2 up to its tanh approximation), a final LayerNorm, and
    logits = LN(h) E^T: the output projection is tied to the token embedding.

    Keyword inputs `cache=` (a list of {"key", "value"} per block, see `generate`) and
    `offset=` (the first position) run the model incrementally; it then returns
    (logits, new_cache).

    Shapes: ids (N, T), T <= max_len -> logits (N, T, vocab_size).
    params {"embed": {"embeddings": (V, d)}, "positions": {"embeddings": (max_len, d)},
    "block0".."block{L-1}": {"norm1", "attention", "drop1", "norm2", "ffn", "drop2"},
    "norm"}. Embeddings start N(0, 0.02) (GPT-2).

    Raises:
      ValueError: a non-positive size, d_model not divisible by num_heads, a bad dropout
        (construction); a sequence longer than max_len (trace time).
    """
    name = "gpt"
    for what, value in (("vocab_size", vocab_size), ("max_len", max_len),
                        ("d_model", d_model), ("num_heads", num_heads),
                        ("num_layers", num_layers), ("ffn_dim", ffn_dim)):
        check_positive_int(name, what, value)
    check_rate(name, "dropout", dropout)
    if d_model % num_heads:
        raise ValueError(f"gpt: d_model must be divisible by num_heads, got d_model={d_model} "
                         f"and num_heads={num_heads}.")
    blocks = {f"block{i}": _block(d_model, num_heads, ffn_dim, dropout)
              for i in range(num_layers)}

    def gpt_forward(m, ids, *, cache=None, offset=0):
        x = m.drop(m.positions(m.embed(ids), offset=offset))
        new_cache = []
        for i in range(num_layers):
            if cache is None:
                x = m[f"block{i}"](x)
            else:
                x, c = m[f"block{i}"](x, cache=cache[i], offset=offset)
                new_cache.append(c)
        logits = m.embed(m.norm(x), reverse=True)
        return logits if cache is None else (logits, new_cache)

    model = compose(gpt_forward, embed=Embedding(vocab_size, d_model,
                                                 embeddings_init=normal(0.02)),
                    positions=PositionEmbedding(max_len, embeddings_init=normal(0.02)),
                    drop=_drop(dropout), **blocks, norm=LayerNorm(epsilon=1e-5))
    return Layer(model.init, model.apply, name="GPT", children=model.children,
                 calls=model.calls, input_dtype=jnp.int32)


def _empty_cache(params, n: int, max_len: int, dtype):
    """Zeros (N, H, max_len, d) for every block's keys and values, from the params' shapes."""
    cache, i = [], 0
    while f"block{i}" in params:
        att = params[f"block{i}"]["attention"]
        _, h, dk = att["key"]["kernel"].shape
        dv = att["value"]["kernel"].shape[-1]
        cache.append({"key": jnp.zeros((n, h, max_len, dk), dtype),
                      "value": jnp.zeros((n, h, max_len, dv), dtype)})
        i += 1
    return cache


def _pick(logits, key, temperature, top_k):
    """The next token: argmax (temperature 0), else a draw from softmax(logits / T) over the
    top_k largest logits (all of them when top_k is None)."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_k is not None:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits >= kth, logits, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.lru_cache(maxsize=16)
def _decoder(model: Layer, temperature: float, top_k):
    """The jitted prefill and the one jitted decoding step (cache size fixed: one compile)."""
    def prefill(params, state, prompt, cache):
        (logits, cache), _ = model.apply(params, state, prompt, cache=cache, offset=0)
        return logits[:, -1], cache

    def step(params, state, token, cache, offset):
        (logits, cache), _ = model.apply(params, state, token[:, None], cache=cache,
                                         offset=offset)
        return logits[:, -1], cache

    return jax.jit(prefill), jax.jit(step)


def generate(model: Layer, params, state, prompt_ids, max_new_tokens: int, *, key=None,
             temperature: float = 0.0, top_k: int | None = None):
    """Continue `prompt_ids` by `max_new_tokens` tokens with a fixed-size KV cache.

    The prompt runs once through the model (prefill), filling each block's cache
    {"key", "value"} of shape (N, H, max_len, d); then one compiled step per new token
    feeds only that token at position p (cache=, offset=p): the cache has max_len slots
    from the start, so the same compiled step serves every position. The cache is an
    explicit argument of the model's apply, not part of its state (DESIGN: state is what
    a layer carries between training steps; a cache lives for one generation).

    temperature 0 is greedy (argmax); otherwise tokens are drawn from
    softmax(logits / temperature), restricted to the top_k largest logits when top_k is
    given; `key` is then required (step t uses fold_in(key, t)).

    Args:
      model: a model built by `jl.models.gpt` (its max_len is read from the model).
      params, state: the model's.
      prompt_ids: int (N, P), P >= 1.
      max_new_tokens: >= 0.

    Returns:
      int32 (N, P + max_new_tokens): the prompt followed by the new tokens.

    Raises:
      ValueError: P + max_new_tokens > max_len (naming both), a bad temperature or top_k,
        sampling without a key, a model not built by jl.models.gpt.
    """
    hparams = dict(model.hparams) if model.name == "GPT" else {}
    if "max_len" not in hparams:
        raise ValueError(f"generate: model must be built by jl.models.gpt (it reads max_len "
                         f"from it), got {model!r}.")
    max_len = hparams["max_len"]
    prompt = jnp.asarray(prompt_ids, jnp.int32)
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"generate: prompt_ids must be (N, P) with P >= 1, got shape "
                         f"{tuple(prompt.shape)}.")
    max_new_tokens = check_int_at_least("generate", "max_new_tokens", max_new_tokens, 0)
    n, p = prompt.shape
    if p + max_new_tokens > max_len:
        raise ValueError(f"generate: the prompt's {p} tokens plus max_new_tokens="
                         f"{max_new_tokens} make {p + max_new_tokens} positions, more than "
                         f"the model's max_len={max_len}.")
    if not (isinstance(temperature, (int, float)) and temperature >= 0):
        raise ValueError(f"generate: temperature must be a number >= 0, got {temperature!r}.")
    if top_k is not None:
        check_positive_int("generate", "top_k", top_k)
    if temperature > 0 and key is None:
        raise ValueError("generate: sampling (temperature > 0) needs a PRNG key, got "
                         "key=None.")
    prefill, step = _decoder(model, float(temperature), top_k)
    cache = _empty_cache(params, n, max_len, params["embed"]["embeddings"].dtype)
    last, cache = prefill(params, state, prompt, cache)
    out = [prompt]
    for t in range(max_new_tokens):
        k = None if key is None else jax.random.fold_in(key, t)
        token = _pick(last, k, temperature, top_k)
        out.append(token[:, None])
        if t + 1 < max_new_tokens:
            last, cache = step(params, state, token, cache, jnp.int32(p + t))
    return jnp.concatenate(out, axis=1)
