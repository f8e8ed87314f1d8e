"""jl.models.gpt and jl.generate: KV-cache decoding against re-running the causal forward."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlayers as jl

KEY = jax.random.key(0)
V, MAX_LEN = 13, 24


@pytest.fixture(scope="module")
def lm():
    model = jl.models.gpt(V, max_len=MAX_LEN, d_model=16, num_heads=2, num_layers=2,
                          ffn_dim=24)
    params, state = model.init(KEY, (2, 5))
    # larger weights than init's, so that greedy decoding does not collapse to one token
    params = jax.tree.map(lambda a: a * 3.0, params)
    return model, params, state


def _full_forward_argmax(model, params, state, prompt, steps):
    """The reference: re-run the whole causal forward on the growing sequence each step."""
    fwd = jax.jit(lambda p, s, ids: model.apply(p, s, ids)[0])
    seq = prompt
    for _ in range(steps):
        nxt = jnp.argmax(fwd(params, state, seq)[:, -1], axis=-1).astype(jnp.int32)
        seq = jnp.concatenate([seq, nxt[:, None]], axis=1)
    return seq


def test_params_tie_the_output_projection_to_the_embedding(lm):
    model, params, state = lm
    assert set(params) == {"embed", "positions", "drop", "block0", "block1", "norm"}
    chex.assert_shape(params["embed"]["embeddings"], (V, 16))
    chex.assert_shape(params["positions"]["embeddings"], (MAX_LEN, 16))
    ids = jax.random.randint(jax.random.key(1), (2, 7), 0, V)
    logits, _ = model.apply(params, state, ids)
    chex.assert_shape(logits, (2, 7, V))
    # the last step: LN(h) @ E^T, by hand from the final hidden state
    def hidden(p):
        h = p["embed"]["embeddings"][ids] + p["positions"]["embeddings"][None, :7]
        for i in range(2):
            blk = jl.models._gpt._block(16, 2, 24, 0.0)
            h, _ = blk.apply(p[f"block{i}"], state[f"block{i}"], h)
        return h
    ln = jl.LayerNorm(epsilon=1e-5)
    want = ln.apply(params["norm"], {}, hidden(params))[0] @ params["embed"]["embeddings"].T
    chex.assert_trees_all_close(logits, want, rtol=1e-4, atol=1e-4)
    # causal: logits at t do not change when later tokens change
    other = ids.at[:, 5:].set((ids[:, 5:] + 1) % V)
    chex.assert_trees_all_close(model.apply(params, state, other)[0][:, :5], logits[:, :5],
                                rtol=1e-5, atol=1e-5)


def test_greedy_generation_equals_the_full_forward_argmax_loop(lm):
    model, params, state = lm
    prompt = jax.random.randint(jax.random.key(2), (2, 4), 0, V)
    out = jl.generate(model, params, state, prompt, 12)
    chex.assert_shape(out, (2, 16))
    np.testing.assert_array_equal(out[:, :4], prompt)
    np.testing.assert_array_equal(out, _full_forward_argmax(model, params, state, prompt, 12))
    assert len(np.unique(np.asarray(out[:, 4:]))) > 1  # not a degenerate constant run


def test_sampling_follows_the_key_temperature_and_top_k(lm):
    model, params, state = lm
    prompt = jax.random.randint(jax.random.key(3), (3, 3), 0, V)
    a = jl.generate(model, params, state, prompt, 8, key=jax.random.key(4), temperature=1.0,
                    top_k=2)
    b = jl.generate(model, params, state, prompt, 8, key=jax.random.key(4), temperature=1.0,
                    top_k=2)
    c = jl.generate(model, params, state, prompt, 8, key=jax.random.key(5), temperature=1.0,
                    top_k=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # every sampled token is among the 2 largest logits of the full forward at its step
    logits, _ = model.apply(params, state, a[:, :-1])
    top2 = np.argsort(np.asarray(logits), axis=-1)[..., -2:]
    for t in range(3, 11):
        assert all(int(a[i, t]) in top2[i, t - 1] for i in range(3)), t


def test_generate_refuses_overflow_and_bad_arguments(lm):
    model, params, state = lm
    prompt = jnp.zeros((1, 5), jnp.int32)
    with pytest.raises(ValueError, match=r"generate: the prompt's 5 tokens plus "
                                         r"max_new_tokens=20 make 25 positions, more than the "
                                         r"model's max_len=24"):
        jl.generate(model, params, state, prompt, 20)
    with pytest.raises(ValueError, match="generate: sampling .* needs a PRNG key"):
        jl.generate(model, params, state, prompt, 2, temperature=0.7)
    with pytest.raises(ValueError, match="generate: model must be built by jl.models.gpt"):
        jl.generate(jl.Dense(2), params, state, prompt, 2)
    with pytest.raises(ValueError, match=r"PositionEmbedding: the sequence has 25 steps, more "
                                         r"than max_len=24"):
        model.apply(params, state, jnp.zeros((1, 25), jnp.int32))


def test_cache_attention_step_by_step_equals_full_causal_attention():
    for rotary in (False, True):
        mha = jl.MultiHeadAttention(2, 4, causal=True, rotary=rotary)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 6, 8)), jnp.float32)
        p, s = mha.init(KEY, x.shape)
        full, _ = mha.apply(p, s, x)
        cache = {"key": jnp.zeros((2, 2, 9, 4)), "value": jnp.zeros((2, 2, 9, 4))}
        (first, cache), _ = mha.apply(p, s, x[:, :3], cache=cache, offset=0)
        steps = [first]
        for t in range(3, 6):
            (y, cache), _ = mha.apply(p, s, x[:, t:t + 1], cache=cache, offset=jnp.int32(t))
            steps.append(y)
        chex.assert_trees_all_close(jnp.concatenate(steps, 1), full, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match=r"MultiHeadAttention: the cache holds 9 "
                                             r"positions; writing 3 at offset 7 would "
                                             r"overflow it"):
            mha.apply(p, s, x[:, :3], cache=cache, offset=7)
