"""BatchNorm and LayerNorm in training, alone: jaxlayers against hand-written formulations.

A targeted complement to the `resblock` and `transformer` workloads of `run.py` (whose
steps are dominated by convolutions and attention): one jitted step of
value_and_grad(sum(relu(norm(x)) * w)) over (gamma, beta, x), on the shapes those
workloads normalise (BatchNorm: the ResNet block's 64×32×32×64 NHWC activations;
LayerNorm: the transformer's 32×128×128). Contenders, per norm:

  jaxlayers   jl.BatchNorm(epsilon=1e-5) in training / jl.LayerNorm(epsilon=1e-5)
  jax         hand-written two-pass statistics, normalised as
              (x - mean) * (gamma * rsqrt(var + eps)) + beta (BN: benchmarks/cnn.py's
              baseline) / (x - mu) * rsqrt(var + eps) * gamma + beta (transformer.py's)
  jax:aa      a second, independent copy of `jax` (the run's noise floor)
  jax:one-pass  var = E[x²] - E[x]² (one read of x for both statistics)
  jax:shifted  one pass about a sample k (BN: x[0, 0, 0] per channel; LN: x[..., 0] per
              row): var = E[(x - k)²] - E[x - k]², the cancellation bounded by (mean - k)²
  jax:custom  two-pass statistics with a hand-written JVP rule whose transpose is the
              textbook backward, dx = scale * (g - mean(g) - x_hat * mean(g * x_hat))

    python benchmarks/norm.py                       # both, 30 rounds x 5 steps
    python benchmarks/norm.py --only bn --rounds 60 --hlo

Prints the load average before and after, per contender the median step time and the
paired per-round ratio to `jax` with a bootstrap 95% interval; `--hlo` compares the
optimised HLO of jaxlayers' step and `jax`'s (run.compare_hlo).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import paired_rounds  # noqa: E402

EPS = 1e-5
SHAPES = {"bn": (64, 32, 32, 64), "ln": (32, 128, 128)}


def _hand(kind, form):
    """(x, gamma, beta) -> y, hand-written; form "two-pass", "one-pass" or "custom"."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    axes = (0, 1, 2) if kind == "bn" else (-1,)
    keep = kind == "ln"

    def stats(x):
        mean = jnp.mean(x, axis=axes, keepdims=keep)
        if form == "one-pass":
            var = jnp.mean(jnp.square(x), axis=axes, keepdims=keep) - jnp.square(mean)
        elif form == "shifted":  # one pass about a sample: E[(x-k)²] - E[x-k]²
            k = lax.stop_gradient(x[:1, :1, :1] if kind == "bn" else x[..., :1])
            var = (jnp.mean(jnp.square(x - k), axis=axes, keepdims=keep)
                   - jnp.square(jnp.mean(x - k, axis=axes, keepdims=keep)))
        else:
            var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=keep)
        return mean, var

    def plain(x, gamma, beta):
        mean, var = stats(x)
        if kind == "bn":
            return (x - mean) * (gamma * lax.rsqrt(var + EPS)) + beta
        return (x - mean) * lax.rsqrt(var + EPS) * gamma + beta

    if form != "custom":
        return plain

    @jax.custom_jvp
    def norm(x, gamma, beta):
        return plain(x, gamma, beta)

    @norm.defjvp
    def norm_jvp(primals, tangents):
        x, gamma, beta = primals
        dx, dgamma, dbeta = tangents
        mean, var = stats(x)
        inv = lax.rsqrt(var + EPS)
        x_hat = (x - mean) * inv
        y = x_hat * gamma + beta
        dmean = jnp.mean(dx, axis=axes, keepdims=keep)
        dproj = jnp.mean(dx * x_hat, axis=axes, keepdims=keep)
        dy = (dx - dmean - x_hat * dproj) * (inv * gamma) + x_hat * dgamma + dbeta
        return y, dy

    return norm


def _setup(kind, contender):
    def setup():
        import jax
        import jax.numpy as jnp

        import jaxlayers as jl

        shape = SHAPES[kind]
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * 2 + 0.5)
        w = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
        c = shape[-1]
        gamma = jnp.asarray(1 + 0.1 * rng.standard_normal(c, dtype=np.float32))
        beta = jnp.asarray(0.1 * rng.standard_normal(c, dtype=np.float32))
        if contender == "jaxlayers":
            layer = jl.BatchNorm(epsilon=EPS) if kind == "bn" else jl.LayerNorm(epsilon=EPS)
            _, state = layer.init(jax.random.key(0), shape)

            def norm(x, gamma, beta):
                return layer.apply({"gamma": gamma, "beta": beta}, state, x,
                                   training=True)[0]
        else:
            form = {"jax": "two-pass", "jax:aa": "two-pass"}.get(contender,
                                                                  contender[len("jax:"):])
            norm = _hand(kind, form)

        def loss(gamma, beta, x):
            return jnp.sum(jax.nn.relu(norm(x, gamma, beta)) * w)

        fn = jax.jit(jax.value_and_grad(loss, (0, 1, 2)))

        def step():
            jax.block_until_ready(fn(gamma, beta, x))

        step.lower = lambda: fn.lower(gamma, beta, x)
        step.value = lambda: fn(gamma, beta, x)
        return step

    return setup


CONTENDERS = ("jaxlayers", "jax", "jax:aa", "jax:one-pass", "jax:shifted", "jax:custom")


def bench(kind, rounds, block, hlo=False, log=print):
    steps = {name: _setup(kind, name)() for name in CONTENDERS}
    ref = steps["jax"].value()
    for name, step in steps.items():  # every contender computes the same numbers
        got = step.value()
        err = max(float(np.max(np.abs(np.asarray(g) - np.asarray(r)) /
                            (1e-3 + np.abs(np.asarray(r)))))
                  for g, r in zip([got[0], *got[1]], [ref[0], *ref[1]]))
        log(f"  {name}: max relative difference to jax {err:.1e}")
        for _ in range(5):
            step()
    rows = paired_rounds(steps, "jax", rounds=rounds, block=block, log=log)
    if hlo:
        from benchmarks import run
        run.compare_hlo(steps, ["jaxlayers", "jax"], log=log)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SHAPES), action="append")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=5)
    parser.add_argument("--hlo", action="store_true")
    args = parser.parse_args(argv)
    out = {}
    for kind in args.only or sorted(SHAPES):
        print(f"{kind}: x {SHAPES[kind]}, value_and_grad of sum(relu(norm(x)) * w)")
        out[kind] = bench(kind, args.rounds, args.block, args.hlo)
    return out


if __name__ == "__main__":
    main()
