"""KV-cache decoding against recomputation: `jl.generate` vs re-running the causal forward.

    python benchmarks/generate.py [--tokens 256] [--repeats 3]

Both decode greedily from the same 8-token prompt with the same random GPT
(d_model 128, 4 heads, 2 blocks, FFN 512, vocab 64, batch 4). The recomputing loop is the
obvious alternative: each new token re-runs the full causal forward on the sequence so
far, padded to max_len (one compiled forward, as the cache path has one compiled step),
and reads the logits at the last real position. Compilation is excluded (one warm-up run
each); the median of `repeats` runs is reported, with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp

import jaxlayers as jl


def _model(max_len: int):
    return jl.models.gpt(64, max_len=max_len, d_model=128, num_heads=4, num_layers=2,
                         ffn_dim=512)


def recompute(model, params, state, prompt, new_tokens, max_len):
    """Greedy decoding by re-running the forward on the (padded) sequence each step."""
    fwd = _padded_forward(model)
    n, p = prompt.shape
    seq = jnp.zeros((n, max_len), jnp.int32).at[:, :p].set(prompt)
    for t in range(new_tokens):
        logits = fwd(params, state, seq)
        nxt = jnp.argmax(logits[:, p + t - 1], axis=-1).astype(jnp.int32)
        seq = seq.at[:, p + t].set(nxt)
    return seq[:, :p + new_tokens]


_FORWARDS = {}


def _padded_forward(model):
    if model not in _FORWARDS:
        _FORWARDS[model] = jax.jit(lambda p, s, ids: model.apply(p, s, ids)[0])
    return _FORWARDS[model]


def _time(fn, repeats):
    fn()  # compile
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    max_len = 8 + args.tokens
    model = _model(max_len)
    params, state = model.init(jax.random.key(0), (4, 8))
    prompt = jax.random.randint(jax.random.key(1), (4, 8), 0, 64)
    cached = _time(lambda: jl.generate(model, params, state, prompt, args.tokens),
                   args.repeats)
    full = _time(lambda: recompute(model, params, state, prompt, args.tokens, max_len),
                 args.repeats)
    same = bool(jnp.all(jl.generate(model, params, state, prompt, args.tokens)
                        == recompute(model, params, state, prompt, args.tokens, max_len)))
    load = os.getloadavg()[0]
    print(f"{args.tokens} new tokens, batch 4, {jax.default_backend()}, load {load:.2f}: "
          f"KV cache {cached:.3f} s, recompute {full:.3f} s, recompute / cache "
          f"{full / cached:.1f}x; same tokens: {same}")
    return {"cached_s": cached, "recompute_s": full, "ratio": full / cached, "same": same}


if __name__ == "__main__":
    main()
