"""Attention and transformers against PyTorch and NumPy: scores, masked softmax, MHA, blocks."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxlayers as jl

KEY = jax.random.key(0)
E, H, F = 8, 2, 12


def _rng(seed):
    return np.random.default_rng(seed)


def _sd(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def _t(a):
    return torch.tensor(np.asarray(a))


# ------------------------------------------------------------------ scores and softmax

def test_scores_against_numpy():
    # float32 in JAX against float64 NumPy: rounding only
    q, k = _rng(0).standard_normal((2, 3, 4)), _rng(1).standard_normal((2, 5, 4))
    dots = np.einsum("ntd,nsd->nts", q, k)
    chex.assert_trees_all_close(jl.attention.dot(q, k), dots, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(jl.attention.scaled_dot(q, k), dots / 2.0, rtol=1e-5, atol=1e-6)
    w = _rng(2).standard_normal((4, 4))
    chex.assert_trees_all_close(jl.attention.general(q, k, w),
                                np.einsum("ntd,de,nse->nts", q, w, k), rtol=1e-5, atol=1e-6)
    norms = np.linalg.norm(q, axis=-1)[:, :, None] * np.linalg.norm(k, axis=-1)[:, None, :]
    chex.assert_trees_all_close(jl.attention.cosine(q, k), dots / norms, rtol=1e-5, atol=1e-6)
    p = {"query_kernel": _rng(3).standard_normal((4, 6)), "key_kernel":
         _rng(4).standard_normal((4, 6)), "bias": _rng(5).standard_normal(6),
         "v": _rng(6).standard_normal(6)}
    want = np.zeros((2, 3, 5))
    for n in range(2):
        for t in range(3):
            for s in range(5):  # Bahdanau: v . tanh(W_q q_t + W_k k_s + b)
                want[n, t, s] = p["v"] @ np.tanh(q[n, t] @ p["query_kernel"]
                                                 + k[n, s] @ p["key_kernel"] + p["bias"])
    chex.assert_trees_all_close(jl.attention.additive(q, k, p), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"attention.dot: queries .* got \(2, 3, 4\) and "
                                         r"\(2, 5, 3\)"):
        jl.attention.dot(q, k[..., :3])


def test_masked_softmax_zero_rows_and_no_nan_gradients():
    s = jnp.asarray(_rng(7).standard_normal((2, 3, 4)), jnp.float32)
    mask = jnp.asarray([[[1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]],
                        [[1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]]], bool)
    w = jl.attention.softmax(s, mask)
    ref = np.where(mask, np.exp(s), 0.0)
    denom = ref.sum(-1, keepdims=True)
    ref = np.divide(ref, denom, out=np.zeros_like(ref), where=denom > 0)
    chex.assert_trees_all_close(w, ref, rtol=1e-6, atol=1e-7)
    assert float(jnp.abs(w[0, 1]).sum()) == 0.0  # nothing to attend: zero weights
    v = jnp.asarray(_rng(8).standard_normal((2, 4, 5)), jnp.float32)
    g = jax.grad(lambda s, v: jnp.sum(jl.attention.softmax(s, mask) @ v), argnums=(0, 1))(s, v)
    chex.assert_tree_all_finite(g)
    assert float(jnp.abs(g[0][0, 1]).sum()) == 0.0
    with pytest.raises(TypeError, match="attention.softmax: mask must be bool"):
        jl.attention.softmax(s, mask.astype(jnp.int32))
    with pytest.raises(ValueError, match=r"attention.softmax: mask of shape \(3,\) does not "
                                         r"broadcast"):
        jl.attention.softmax(s, jnp.ones((3,), bool))


def test_rotary_scores_depend_on_relative_position_only():
    d = 6
    q, k = _rng(9).standard_normal(d), _rng(10).standard_normal(d)
    def score(p, s):  # the same q at position p against the same k at position s
        qs = jl.attention.rotary(jnp.tile(jnp.asarray(q, jnp.float32), (8, 1)))
        ks = jl.attention.rotary(jnp.tile(jnp.asarray(k, jnp.float32), (8, 1)))
        return float(qs[p] @ ks[s])
    assert score(5, 3) == pytest.approx(score(4, 2), abs=1e-5) == pytest.approx(score(2, 0), abs=1e-5)
    assert score(0, 0) == pytest.approx(float(q @ k), abs=1e-5)
    # against the formula: pair (i, i + d/2) rotated by p * base^(-2i/d)
    x = _rng(11).standard_normal((4, d))
    theta = 10000.0 ** (-np.arange(d // 2) * 2.0 / d)
    want = np.empty_like(x)
    for p in range(4):
        c, s = np.cos(p * theta), np.sin(p * theta)
        want[p, :d // 2] = x[p, :d // 2] * c - x[p, d // 2:] * s
        want[p, d // 2:] = x[p, d // 2:] * c + x[p, :d // 2] * s
    chex.assert_trees_all_close(jl.attention.rotary(jnp.asarray(x, jnp.float32)), want,
                                rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ MultiHeadAttention

def _torch_mha(params, kdim=None):
    t = torch.nn.MultiheadAttention(E, H, batch_first=True, kdim=kdim, vdim=kdim)
    wq = params["query"]["kernel"].reshape(-1, E).T
    wk = params["key"]["kernel"].reshape(-1, E).T
    wv = params["value"]["kernel"].reshape(-1, E).T
    with torch.no_grad():
        if kdim is None:
            t.in_proj_weight.copy_(_t(np.concatenate([wq, wk, wv])))
        else:
            t.q_proj_weight.copy_(_t(wq))
            t.k_proj_weight.copy_(_t(wk))
            t.v_proj_weight.copy_(_t(wv))
        t.in_proj_bias.copy_(_t(np.concatenate(
            [params[n]["bias"].ravel() for n in ("query", "key", "value")])))
        t.out_proj.weight.copy_(_t(params["output"]["kernel"].reshape(E, E).T))
        t.out_proj.bias.copy_(_t(params["output"]["bias"]))
    return t


@pytest.mark.parametrize("implementation", ["softmax", "fused"])
def test_mha_matches_torch_with_padding_attn_mask_and_causal(implementation):
    x = _rng(12).standard_normal((3, 5, E)).astype(np.float32)
    mem = _rng(13).standard_normal((3, 6, 7)).astype(np.float32)
    kpm = np.array([[0] * 6, [0] * 4 + [1] * 2, [0] * 3 + [1] * 3], bool)  # True = ignore
    attn = np.triu(_rng(14).random((5, 6)) < 0.3, 1)                    # True = ignore
    layer = jl.MultiHeadAttention(H, E // H, implementation=implementation)
    params, state = layer.init(KEY, (x.shape, mem.shape))
    p = jax.tree.map(np.asarray, params)
    t = _torch_mha(p, kdim=7)
    ref, _ = t(_t(x), _t(mem), _t(mem), key_padding_mask=_t(kpm), attn_mask=_t(attn))
    y, _ = layer.apply(params, state, (x, jl.Masked(mem, ~kpm)), mask=~attn)
    chex.assert_trees_all_close(y, ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    # the same padding as an explicit mask=, and the gradients
    def loss_j(p, x):
        return jnp.sum(layer.apply(p, state, (x, mem), mask=~(attn[None, None] | kpm[:, None, None, :]))[0] ** 2)
    gp, gx = jax.grad(loss_j, argnums=(0, 1))(params, x)
    xt = _t(x).requires_grad_()
    out, _ = t(xt, _t(mem), _t(mem), key_padding_mask=_t(kpm), attn_mask=_t(attn))
    (out ** 2).sum().backward()
    chex.assert_trees_all_close(gx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(gp["output"]["bias"], t.out_proj.bias.grad.numpy(), rtol=1e-4,
                                atol=1e-5)
    # self-attention with is_causal
    causal = jl.MultiHeadAttention(H, E // H, causal=True, implementation=implementation)
    pc, sc = causal.init(KEY, x.shape)
    tc = _torch_mha(jax.tree.map(np.asarray, pc))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5)
    refc, _ = tc(_t(x), _t(x), _t(x), attn_mask=mask, is_causal=True)
    chex.assert_trees_all_close(causal.apply(pc, sc, x)[0], refc.detach().numpy(), rtol=1e-5,
                                atol=1e-5)


def test_mha_paths_agree_and_weights_rows_are_zero_where_nothing_is_attended():
    x = _rng(15).standard_normal((2, 4, E)).astype(np.float32)
    mask = np.ones((2, 1, 4, 4), bool)
    mask[1, :, 2] = False  # query 2 of example 1 attends nothing
    out = {}
    for form in ("softmax", "fused"):
        layer = jl.MultiHeadAttention(H, 4, output_dim=6, rotary=True,
                                      implementation=form)
        params, state = layer.init(KEY, x.shape)
        out[form], _ = layer.apply(params, state, x, mask=mask)
    chex.assert_trees_all_close(out["softmax"], out["fused"], rtol=1e-5, atol=1e-6)
    layer = jl.MultiHeadAttention(H, 3, return_weights=True)
    params, state = layer.init(KEY, x.shape)
    (y, w), _ = layer.apply(params, state, x, mask=mask)
    chex.assert_shape(w, (2, H, 4, 4))
    assert float(jnp.abs(w[1, :, 2]).sum()) == 0.0
    chex.assert_trees_all_close(y[1, 2], params["output"]["bias"])  # zero context: the bias
    chex.assert_trees_all_close(jnp.sum(w[0], -1), jnp.ones((H, 4)), rtol=1e-6)
    # a padded query attends nothing (Keras's query mask) and the output keeps its mask,
    # while a padded key is attended by no query
    pad = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    (ym, wm), _ = layer.apply(params, state, jl.Masked(x, pad))
    np.testing.assert_array_equal(ym.mask, pad)
    assert float(jnp.abs(wm[1, :, 2:]).sum()) == 0.0 and float(jnp.abs(wm[1, :, :, 2:]).sum()) == 0.0
    chex.assert_trees_all_close(jnp.sum(wm[1, :, :2], -1), jnp.ones((H, 2)), rtol=1e-6)


def test_mha_dropout_uses_the_rate_and_the_key():
    x = jnp.asarray(_rng(16).standard_normal((4, 6, E)), jnp.float32)
    layer = jl.MultiHeadAttention(H, 4, dropout=0.2, return_weights=True)
    params, state = layer.init(KEY, x.shape)
    (_, w), _ = layer.apply(params, state, x, key=jax.random.key(3), training=True)
    (_, w_eval), _ = layer.apply(params, state, x)
    dropped = float(jnp.mean(w == 0))
    assert 0.12 < dropped < 0.28, dropped  # rate 0.2, not the keep probability 0.8
    kept = w != 0
    chex.assert_trees_all_close(jnp.where(kept, w, 0), jnp.where(kept, w_eval / 0.8, 0),
                                rtol=1e-5)
    with pytest.raises(ValueError, match="MultiHeadAttention: training=True needs a PRNG key"):
        layer.apply(params, state, x, training=True)


def test_mha_bad_input_names_layer_and_shapes():
    with pytest.raises(ValueError, match="MultiHeadAttention: rotary=True needs an even key_dim"):
        jl.MultiHeadAttention(2, 3, rotary=True)
    with pytest.raises(ValueError, match="MultiHeadAttention: score must be one of"):
        jl.MultiHeadAttention(2, 4, score="additive")
    layer = jl.MultiHeadAttention(H, 4)
    params, state = layer.init(KEY, ((2, 5, E), (2, 6, E), (2, 6, E)))
    x, kv = jnp.ones((2, 5, E)), jnp.ones((2, 6, E))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: mask must broadcast to "
                                         r"\(N, H, Tq, Tk\) = \(2, 2, 5, 6\), got shape \(5, 5\)"):
        layer.apply(params, state, (x, kv, kv), mask=jnp.ones((5, 5), bool))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: key and value must have the "
                                         r"same \(N, T\).*key \(2, 6, 8\), value \(2, 4, 8\)"):
        layer.apply(params, state, (x, kv, kv[:, :4]))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: the key must have 8 features "
                                         r"on the last axis \(as its kernel\), got shape "
                                         r"\(2, 6, 5\)"):
        layer.apply(params, state, (x, kv[..., :5], kv))
    with pytest.raises(TypeError, match="MultiHeadAttention: mask must be a bool array"):
        layer.apply(params, state, (x, kv, kv), mask=jnp.ones((2, 1, 5, 6)))


# ------------------------------------------------------------------ positional encodings

def test_sinusoidal_encoding_is_the_seed_formula_and_refuses_long_sequences():
    x = jnp.zeros((2, 7, 6))
    y, _ = jl.SinusoidalPositionalEncoding(10).apply({}, {}, x)
    want = np.zeros((7, 6))
    for pos in range(7):
        for i in range(3):  # PE(pos, 2i) = sin(pos / 10000^(2i/d)), cos at 2i + 1
            want[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / 6))
            want[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / 6))
    chex.assert_trees_all_close(y[0], want, rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(y[1], want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"SinusoidalPositionalEncoding: the sequence has 7 "
                                         r"steps, more than max_len=5"):
        jl.SinusoidalPositionalEncoding(5).apply({}, {}, x)
    pe = jl.PositionEmbedding(9)
    p, s = pe.init(KEY, (2, 7, 6))
    chex.assert_shape(p["embeddings"], (9, 6))
    y, _ = pe.apply(p, s, jnp.ones((2, 7, 6)))
    want = np.broadcast_to(1.0 + np.asarray(p["embeddings"])[None, :7], (2, 7, 6))
    chex.assert_trees_all_close(y, want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"PositionEmbedding: the sequence has 10 steps, more "
                                         r"than max_len=9"):
        pe.apply(p, s, jnp.ones((2, 10, 6)))


# ------------------------------------------------------------------ blocks vs PyTorch

@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_matches_torch(norm_first, activation):
    torch.manual_seed(0)
    t = torch.nn.TransformerEncoderLayer(E, H, F, dropout=0.0, activation=activation,
                                         batch_first=True, norm_first=norm_first)
    params = jl.interop.from_torch("TransformerEncoderLayer", _sd(t), num_heads=H)
    block = jl.TransformerEncoderBlock(H, F, activation=activation, norm_first=norm_first)
    x = _rng(17).standard_normal((3, 5, E)).astype(np.float32)
    _, state = block.init(KEY, x.shape)
    chex.assert_trees_all_equal_shapes(params, block.init(KEY, x.shape)[0])
    kpm = np.array([[0] * 5, [0] * 3 + [1] * 2, [0] * 4 + [1]], bool)
    t.eval()
    ref = t(_t(x), src_key_padding_mask=_t(kpm)).detach().numpy()
    y, _ = block.apply(params, state, jl.Masked(x, ~kpm))
    valid = ~kpm  # PyTorch's fast path may zero padded rows; compare the real ones
    chex.assert_trees_all_close(np.asarray(y.values)[valid], ref[valid], rtol=1e-5, atol=1e-5)
    # gradients of the unmasked layer
    xt = _t(x).requires_grad_()
    (t(xt) ** 2).sum().backward()
    gx = jax.grad(lambda x: jnp.sum(block.apply(params, state, x)[0] ** 2))(x)
    chex.assert_trees_all_close(gx, xt.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_block_matches_torch(norm_first):
    torch.manual_seed(1)
    t = torch.nn.TransformerDecoderLayer(E, H, F, dropout=0.0, batch_first=True,
                                         norm_first=norm_first, activation="gelu")
    params = jl.interop.from_torch("TransformerDecoderLayer", _sd(t), num_heads=H)
    block = jl.TransformerDecoderBlock(H, F, norm_first=norm_first, activation="gelu")
    tgt = _rng(18).standard_normal((2, 4, E)).astype(np.float32)
    mem = _rng(19).standard_normal((2, 6, E)).astype(np.float32)
    mpm = np.array([[0] * 6, [0] * 2 + [1] * 4], bool)
    _, state = block.init(KEY, (tgt.shape, mem.shape))
    causal = torch.nn.Transformer.generate_square_subsequent_mask(4)
    ref = t(_t(tgt), _t(mem), tgt_mask=causal, tgt_is_causal=True,
            memory_key_padding_mask=_t(mpm)).detach().numpy()
    y, _ = block.apply(params, state, (tgt, jl.Masked(mem, ~mpm)))
    chex.assert_trees_all_close(y, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"MultiHeadAttention: the key must have 8 features"):
        block.apply(params, state, (tgt, mem[..., :6]))
    with pytest.raises(ValueError, match=r"TransformerDecoderBlock: input must be "
                                         r"\(target, memory\)"):
        block.apply(params, state, tgt)


def test_blocks_refuse_a_width_not_divisible_by_the_heads():
    with pytest.raises(ValueError, match=r"TransformerEncoderBlock: d_model must be divisible "
                                         r"by num_heads .* d_model=10 .* num_heads=4"):
        jl.TransformerEncoderBlock(4, 16).init(KEY, (2, 3, 10))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_scan_equals_unrolled(norm_first):
    unrolled = jl.TransformerEncoder(3, H, F, norm_first=norm_first)
    scanned = jl.TransformerEncoder(3, H, F, norm_first=norm_first, scan=True)
    x = jnp.asarray(_rng(20).standard_normal((2, 5, E)), jnp.float32)
    params, state = unrolled.init(KEY, x.shape)
    blocks = params["blocks"]
    stacked = {"blocks": jax.tree.map(lambda *a: jnp.stack(a),
                                      *[blocks[str(i)] for i in range(3)])}
    if norm_first:
        stacked["norm"] = params["norm"]
    _, sstate = scanned.init(KEY, x.shape)
    chex.assert_trees_all_equal_shapes(stacked, scanned.init(KEY, x.shape)[0])
    y, _ = unrolled.apply(params, state, x)
    ys, _ = scanned.apply(stacked, sstate, x)
    chex.assert_trees_all_close(y, ys, rtol=1e-5, atol=1e-5)
    # the unrolled stack is the blocks one after the other (and the final LayerNorm)
    h = x
    block = jl.TransformerEncoderBlock(H, F, norm_first=norm_first)
    for i in range(3):
        h, _ = block.apply(blocks[str(i)], state["blocks"][str(i)], h)
    if norm_first:
        ln = jl.LayerNorm(epsilon=1e-5)
        h, _ = ln.apply(params["norm"], {}, h)
    chex.assert_trees_all_close(y, h, rtol=1e-6, atol=1e-6)
