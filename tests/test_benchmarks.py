"""The benchmark entry point runs (a smoke test: speed is measured in benchmarks/, not here)."""

import pathlib
import sys

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _import(module):
    """benchmarks.<module>, imported from the repository root (benchmarks/ is no package
    of the installed library)."""
    import importlib

    sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module(f"benchmarks.{module}")
    finally:
        sys.path.remove(str(ROOT))


@pytest.mark.slow
def test_benchmark_entry_point_times_every_contender_of_the_mlp():
    run = _import("run")
    # The hand-written baseline is plain user code, free to rely on rank promotion
    # (x @ w + b); the suite's "raise" setting is for the library's own layers.
    with jax.numpy_rank_promotion("allow"):
        (result,) = run.main(["--only", "mlp", "--quick", "--repeats", "2", "--block", "2",
                              "--warmup", "1", "--kind", "jaxlayers", "--kind", "jax",
                              "--kind", "torch"])
    assert not result["failed"], result["failed"]
    for name in ("jaxlayers", "jax", "pytorch"):
        assert result["rows"][name]["median_ms"] > 0
    assert result["paired_jaxlayers_vs_baseline"] is not None


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_hand_written_custom_jvp_baselines_have_the_gradients_of_the_plain_scan(cell):
    """The fastest hand-written RNN baselines (benchmarks/rnn.py, jax:custom) carry their own
    JVP rule: a wrong rule would time a different computation. Check it against JAX's
    differentiation of a plain lax.scan written out here (float64, small shapes)."""
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    rnn = _import("rnn")
    t, n, d, h = 6, 4, 3, 5
    g = 4 if cell == "lstm" else 3

    def plain(W, U, b, xs):
        def lstm(carry, x):
            hh, c = carry
            i, f, gg, o = jnp.split(x @ W + hh @ U + b, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
            return (jax.nn.sigmoid(o) * jnp.tanh(c), c), None

        def gru(hh, x):  # reset-after, seed update rule, b = (input row, recurrent row)
            xw, hu = x @ W + b[0], hh @ U + b[1]
            z = jax.nn.sigmoid(xw[:, :h] + hu[:, :h])
            r = jax.nn.sigmoid(xw[:, h:2 * h] + hu[:, h:2 * h])
            return (1 - z) * hh + z * jnp.tanh(xw[:, 2 * h:] + r * hu[:, 2 * h:]), None

        zero = jnp.zeros((n, h))
        if cell == "lstm":
            return lax.scan(lstm, (zero, zero), xs)[0][0]
        return lax.scan(gru, zero, xs)[0]

    # hand-written code, free to rely on rank promotion (see the test above)
    with jax.enable_x64(), jax.numpy_rank_promotion("allow"):
        rng = np.random.default_rng(0)
        xs = jnp.asarray(rng.normal(size=(t, n, d)))
        W, U = (jnp.asarray(0.5 * rng.normal(size=s)) for s in ((d, g * h), (h, g * h)))
        b = jnp.asarray(0.5 * rng.normal(size=(g * h,) if cell == "lstm" else (2, g * h)))
        custom = rnn._custom_lstm if cell == "lstm" else rnn._custom_gru
        want = jax.value_and_grad(lambda *p: jnp.sum(jnp.sin(plain(*p, xs))), (0, 1, 2))(W, U, b)
        for split_prev in (False, True):
            got = jax.value_and_grad(lambda *p: jnp.sum(jnp.sin(custom(*p, xs, split_prev))),
                                     (0, 1, 2))(W, U, b)
            jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-12),
                         got, want)


@pytest.mark.slow
def test_contender_filter_keeps_the_named_variant_next_to_jaxlayers_and_the_baseline():
    run = _import("run")
    with jax.numpy_rank_promotion("allow"):
        (result,) = run.main(["--only", "gru", "--quick", "--repeats", "1", "--block", "1",
                              "--warmup", "0", "--contender", "jaxlayers:fused+custom"])
    assert not result["failed"], result["failed"]
    assert set(result["rows"]) == {"jaxlayers", "jax", "jaxlayers:fused+custom"}


def test_every_workload_has_a_torch_compile_contender_and_the_table_shows_its_ratio():
    run = _import("run")
    for name in ("mlp", "lenet5", "resblock", "convstack", "lstm", "gru", "transformer"):
        workload = run.load_workload(name)
        compiled = [c for c in workload.contenders if c.name == workload.compiled]
        assert len(compiled) == 1 and compiled[0].slow and compiled[0].kind == "torch", name
    rows = {"jaxlayers": dict(first_call_s=1.0, median_ms=6.0, min_ms=5.0, p10_ms=5.5,
                              p90_ms=7.0, vs_baseline=1.2, vs_reference=3.0, vs_compiled=1.5),
            "torch.compile": dict(first_call_s=30.0, median_ms=4.0, min_ms=3.5, p10_ms=3.8,
                                  p90_ms=4.4, vs_baseline=0.8, vs_reference=2.0,
                                  vs_compiled=1.0)}
    result = {"rows": rows, "baseline": "jax", "reference": "pytorch",
              "compiled": "torch.compile"}
    head, _, first, second = run.format_table(result).splitlines()
    assert head.split()[-2:] == ["/", "torch.compile"]
    assert first.split()[-3:] == ["1.200", "3.000", "1.500"]
    assert second.split()[-1] == "1.000"
    # without the torch.compile contender (--quick) the column is left out
    result["compiled"] = None
    assert "torch.compile" not in run.format_table(result).splitlines()[0]


def test_kv_cache_benchmark_runs_and_both_paths_agree():
    result = _import("generate").main(["--tokens", "6", "--repeats", "1"])
    assert result["same"] and result["cached_s"] > 0 and result["recompute_s"] > 0


def test_convstack_hand_written_step_has_the_library_models_logits_and_gradients():
    """benchmarks/cnn.py convstack: the hand-written lax forward (XLA's conv and its
    gradient), given the library's weights, gives the library model's logits and the same
    parameter gradients, though the library's 32/64-channel convs take their kernel
    gradient from the CPU im2col path (float64, a small image)."""
    import chex
    import jax.numpy as jnp

    cnn = _import("cnn")
    model = cnn._convstack_model()
    with jax.enable_x64(), jax.numpy_rank_promotion("allow"):  # plain user code
        x = jax.random.normal(jax.random.key(4), (2, 9, 11, 3), jnp.float64)
        params, state = model.init(jax.random.key(5), x.shape)
        params = jax.tree.map(lambda a: a.astype(jnp.float64) + 0.05, params)  # bias != 0

        def ours(p):
            return jnp.sum(jnp.sin(model.apply(p, state, x)[0]))

        def hand(p):
            return jnp.sum(jnp.sin(cnn.stack_forward(p, x)))

        value, grads = jax.jit(jax.value_and_grad(ours))(params)
        want_value, want = jax.jit(jax.value_and_grad(hand))(
            cnn.stack_params_from_library(params))
        chex.assert_trees_all_close(value, want_value, rtol=1e-12)
        chex.assert_trees_all_close(cnn.stack_params_from_library(grads), want,
                                    rtol=1e-10, atol=1e-12)


def test_transformer_contenders_compute_the_same_function():
    """benchmarks/transformer.py: the hand-written forms (heads-first, einsum,
    dot_product_attention) and PyTorch's pre-LN encoder, given the library's weights,
    give the library's logits: the table times one computation, not three."""
    import chex
    import jax.numpy as jnp
    import numpy as np
    import torch

    tr = _import("transformer")
    model = tr.library_model()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 7, tr.D_MODEL)).astype(np.float32)
    params, state = model.init(jax.random.key(2), x.shape)
    params = jax.tree.map(lambda a: a + 0.1 * jnp.asarray(rng.standard_normal(a.shape),
                                                          a.dtype), params)
    want, _ = model.apply(params, state, jnp.asarray(x))

    enc, _, head = params
    e = tr.D_MODEL

    def fused(p):  # (E, H, d) kernel, (H, d) bias -> (E, H*d), (H*d,)
        return {"w": np.asarray(p["kernel"]).reshape(e, -1), "b": np.asarray(p["bias"]).reshape(-1)}

    blocks = []
    for i in range(tr.BLOCKS):
        b = enc["blocks"][str(i)]
        a = b["self_attention"]
        blocks.append({
            "q": fused(a["query"]), "k": fused(a["key"]), "v": fused(a["value"]),
            "o": {"w": np.asarray(a["output"]["kernel"]).reshape(e, e),
                  "b": np.asarray(a["output"]["bias"])},
            "ln1": {"g": b["norm1"]["gamma"], "b": b["norm1"]["beta"]},
            "ln2": {"g": b["norm2"]["gamma"], "b": b["norm2"]["beta"]},
            "ff1": {"w": b["ffn"]["hidden"]["kernel"], "b": b["ffn"]["hidden"]["bias"]},
            "ff2": {"w": b["ffn"]["output"]["kernel"], "b": b["ffn"]["output"]["bias"]}})
    hand = {"blocks": blocks, "norm": {"g": enc["norm"]["gamma"], "b": enc["norm"]["beta"]},
            "head": {"w": head["kernel"], "b": head["bias"]}}
    with jax.numpy_rank_promotion("allow"):  # plain user code (see the tests above)
        for form in ("heads-first", "einsum", "dpa"):
            chex.assert_trees_all_close(tr.forward(hand, jnp.asarray(x), form), want,
                                        rtol=1e-4, atol=1e-4)

    from torch import nn
    layer = nn.TransformerEncoderLayer(e, tr.HEADS, tr.FFN, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True,
                                       layer_norm_eps=tr.EPSILON)
    encoder = nn.TransformerEncoder(layer, tr.BLOCKS, norm=nn.LayerNorm(e, eps=tr.EPSILON),
                                    enable_nested_tensor=False)
    sd = {}
    for i, b in enumerate(blocks):
        pre = f"layers.{i}."
        sd[pre + "self_attn.in_proj_weight"] = np.concatenate([b[w]["w"].T for w in "qkv"])
        sd[pre + "self_attn.in_proj_bias"] = np.concatenate([b[w]["b"] for w in "qkv"])
        sd[pre + "self_attn.out_proj.weight"] = b["o"]["w"].T
        sd[pre + "self_attn.out_proj.bias"] = b["o"]["b"]
        for ours, theirs in (("ln1", "norm1"), ("ln2", "norm2")):
            sd[pre + theirs + ".weight"], sd[pre + theirs + ".bias"] = b[ours]["g"], b[ours]["b"]
        sd[pre + "linear1.weight"], sd[pre + "linear1.bias"] = b["ff1"]["w"].T, b["ff1"]["b"]
        sd[pre + "linear2.weight"], sd[pre + "linear2.bias"] = b["ff2"]["w"].T, b["ff2"]["b"]
    sd["norm.weight"], sd["norm.bias"] = hand["norm"]["g"], hand["norm"]["b"]
    encoder.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
    with torch.no_grad():
        pooled = encoder(torch.from_numpy(x)).mean(dim=1).numpy()
    chex.assert_trees_all_close(pooled @ np.asarray(head["kernel"]) + np.asarray(head["bias"]),
                                np.asarray(want), rtol=1e-4, atol=1e-4)


def test_precision_contenders_compute_the_same_bfloat16_function():
    """benchmarks/precision.py: the hand-written bfloat16 step's forward, on the library's
    weights, gives the bfloat16 policy's logits to bfloat16 rounding, and both sit near the
    float32 logits (the timed steps compute one function, at two precisions)."""
    import chex
    import jax.numpy as jnp
    import numpy as np

    pr = _import("precision")
    model, plain = pr.library_model("bfloat16"), pr.library_model("float32")
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((3, 7, pr.tf.D_MODEL)).astype(np.float32))
    params, state = model.init(jax.random.key(2), x.shape)
    params = jax.tree.map(lambda a: a + 0.1 * jnp.asarray(rng.standard_normal(a.shape),
                                                          a.dtype), params)
    want, _ = model.apply(params, state, x)
    want32, _ = plain.apply(params, state, x)
    with jax.numpy_rank_promotion("allow"):  # plain user code (see the tests above)
        got = pr.forward_bf16(pr.hand_params(params), x)
    assert got.dtype == want.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(want32)))
    # the same bfloat16 program written twice (equal bit for bit on jaxlib 0.10); an
    # ulp of bfloat16 at the logits' scale allows XLA to round one fusion differently
    chex.assert_trees_all_close(got, want, rtol=0, atol=2.0 ** -8 * scale)
    chex.assert_trees_all_close(want, want32, rtol=0, atol=0.05 * scale)
    assert float(jnp.max(jnp.abs(want - want32))) > 1e-4 * scale
