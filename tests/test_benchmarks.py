"""The benchmark entry point runs (a smoke test: speed is measured in benchmarks/, not here)."""

import pathlib
import sys

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_benchmark_entry_point_times_every_contender_of_the_mlp():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import run
    finally:
        sys.path.remove(str(ROOT))
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
