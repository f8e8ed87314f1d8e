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


def test_kv_cache_benchmark_runs_and_both_paths_agree():
    result = _import("generate").main(["--tokens", "6", "--repeats", "1"])
    assert result["same"] and result["cached_s"] > 0 and result["recompute_s"] > 0
