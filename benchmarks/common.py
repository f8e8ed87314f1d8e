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

__all__ = ["Contender", "Workload", "num_threads", "jax_stepper", "torch_stepper"]


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


def torch_stepper(fn) -> Callable[[], None]:
    """step() for a PyTorch step closure (CPU tensors run synchronously; read the loss)."""

    def step():
        fn().item()

    return step
