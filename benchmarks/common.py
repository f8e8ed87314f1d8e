"""What a workload module declares (Workload, Contender) and helpers shared by workloads.

A workload module (benchmarks/mlp.py, later lenet.py, resnet.py, lstm.py, ...) exposes
`WORKLOAD = Workload(...)`; benchmarks/run.py times every contender of it in interleaved
rounds. A contender's `setup()` builds the model, optimizer and data, and returns a
zero-argument `step()` that runs ONE training step on the same batch, feeds the new
params/optimizer state back for the next call, and blocks until every output is ready.
The first `step()` call includes tracing and compilation; run.py times it separately.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Contender", "Workload", "num_threads", "jax_stepper", "torch_stepper",
           "paired_rounds"]


@dataclass(frozen=True)
class Contender:
    """One implementation of a workload's train step.

    kind: "jaxlayers", "jax" (hand-written), "torch"; the table's ratios are taken
    against the workload's `baseline` and `reference` contenders.
    slow: skipped by `--quick` (e.g. torch.compile, ~30 s of compilation).
    variant: a hand-written alternative, timed only with `--variants`.
    """

    name: str
    setup: Callable[[], Callable[[], None]]
    kind: str
    note: str = ""
    slow: bool = False
    variant: bool = False


@dataclass(frozen=True)
class Workload:
    """A model + data + optimizer, and the contenders that implement its train step."""

    name: str
    title: str
    contenders: tuple[Contender, ...]
    baseline: str           # the hand-written JAX contender (fastest variant found)
    reference: str          # the PyTorch contender the table compares with
    compiled: str = "torch.compile"  # the torch.compile contender (a third ratio column)
    notes: tuple[str, ...] = field(default_factory=tuple)


def num_threads() -> int:
    """Cores this process may use: the size of XLA:CPU's intra-op pool, and torch's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def jax_stepper(fn, carry, const, n_carry: int | None = None) -> Callable[[], None]:
    """step() for a JAX function `fn(*carry, *const) -> (*new_carry, loss)`.

    The new carry (params, optimizer state, ...) replaces the old one for the next call,
    which is what a donated buffer requires; every output is blocked on.
    """
    import jax

    carry = list(carry)
    n = len(carry) if n_carry is None else n_carry

    def step():
        out = fn(*carry, *const)
        carry[:] = out[:n]
        jax.block_until_ready(out)

    step.lower = lambda: fn.lower(*carry, *const)  # for `run.py --hlo`
    return step


def torch_stepper(fn, compiled: bool = False) -> Callable[[], None]:
    """step() for a PyTorch step closure (CPU tensors run synchronously; read the loss).

    compiled: run the whole closure (forward, backward, optimizer step) under
    `torch.compile` (inductor, C++ on the CPU); the first call compiles. Dynamo breaks
    the graph at `loss.backward()` and compiles the optimizer step on its own, and it
    leaves `nn.LSTM`/`nn.GRU` to eager (`torch._dynamo.config.allow_rnn` is off by
    default): what a user gets from `torch.compile(step)`.
    """
    if compiled:
        import torch

        fn = torch.compile(fn)

    def step():
        fn().item()

    return step


def paired_rounds(steps: dict, reference: str, *, rounds: int, block: int,
                  log=print) -> dict:
    """Time zero-argument `steps` {name: step} in interleaved rounds against `reference`.

    Each round runs the steps in a shuffled (seeded) order: one untimed call, then `block`
    timed calls, whose median is the round's figure; the garbage collector is off and the
    1-minute load average is logged before and after. Returns {name: (median ms over the
    rounds, paired ratio to the reference (median over rounds of the per-round ratio),
    its bootstrap 95% interval low, high)}, each also logged. A lighter form of
    benchmarks/run.py's timing, for the lever studies (norm.py, rnn.py's levers).
    """
    import gc
    import random
    import statistics
    import time

    per = {name: [] for name in steps}
    order_rng = random.Random(0)
    log(f"  load before {os.getloadavg()[0]:.2f}")
    gc.disable()
    try:
        for _ in range(rounds):
            order = list(steps)
            order_rng.shuffle(order)
            for name in order:
                steps[name]()
                times = []
                for _ in range(block):
                    t0 = time.perf_counter()
                    steps[name]()
                    times.append(time.perf_counter() - t0)
                per[name].append(statistics.median(times))
    finally:
        gc.enable()
    log(f"  load after {os.getloadavg()[0]:.2f}")
    rows, width = {}, max(len(name) for name in steps)
    for name in steps:
        ratios = [a / b for a, b in zip(per[name], per[reference])]
        boot = random.Random(1)
        meds = sorted(statistics.median(boot.choices(ratios, k=len(ratios)))
                      for _ in range(1000))
        rows[name] = (1e3 * statistics.median(per[name]), statistics.median(ratios),
                      meds[25], meds[975])
        log(f"  {name:{width}s} median {rows[name][0]:8.2f} ms   paired / {reference} "
            f"{rows[name][1]:.3f} (95% CI {rows[name][2]:.3f}-{rows[name][3]:.3f})")
    return rows
