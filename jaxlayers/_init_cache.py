"""`Layer.init` on a traced key: one jitted program per (layer, spec), random ops batched.

XLA:CPU spends ~0.1-0.3 s of CPU compiling each threefry call (a 5-trip while loop), and
a ResNet-50 init makes ~300 of them (fold_in/split per child, bits per kernel): 8-13 s
of compile under `jax.jit(init)`. An init called on a traced key (a user's jit, vmap,
eval_shape) therefore traces the raw init once per (layer, input spec, key type),
re-evaluates its jaxpr with the independent random ops of each dependency level batched
into one call (vmap over stacked keys: the same bits as one call per key), and keeps
that as a jitted function; with threefry keys and the partitionable scheme (jax's
default) the batched random bits come from a written-out threefry that XLA fuses with
their consumer (`_threefry_bits`), not from jax's primitive, which XLA:CPU runs as a
5-pass while loop. On a concrete key init runs op by op as before: compiling one
program per model measured no faster than the small per-shape kernels (shared by every
model in the process) and made the test suite slower (benchmarks/README.md, "init
against Flax linen").

This module reads jaxprs (equations, their params and contexts): a JAX upgrade that
changes those internals shows first as a failure of tests/test_init_speed.py, which pins
the params bit for bit to the raw init's. Without `jax.extend.core.primitives` (older
JAX) every init runs raw.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import threading
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

try:
    from jax.extend import core as _jcore
    from jax.extend.core import primitives as _prng
except ImportError:  # older JAX: no public random primitives; every init runs raw
    _jcore = _prng = None

__all__ = ["cached_init", "raw_init"]

_JIT_MIN_RANDOM_OPS = 32
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call"})
_KEY_OPS = () if _prng is None else (_prng.random_fold_in_p, _prng.random_split_p)
_local = threading.local()  # .raw: inits run their raw functions (nested, or asked for)


@contextlib.contextmanager
def raw_init():
    """Within it, every `Layer.init` runs its own init function eagerly, as before the cache:
    one small kernel per op (the reference of tests/test_init_speed.py and benchmarks/init.py)."""
    before = getattr(_local, "raw", False)
    _local.raw = True
    try:
        yield
    finally:
        _local.raw = before


def _flatten_jaxpr(jaxpr, consts, in_refs, nodes):
    """Append `jaxpr`'s equations to `nodes` as (eqn, in cells, out cells), calls inlined."""
    env = {}

    def read(v):
        return [v.val, True] if isinstance(v, _jcore.Literal) else env[v]

    env.update((v, [c, True]) for v, c in zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, in_refs))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        if eqn.primitive.name in _CALLS and not eqn.effects:
            sub = eqn.params["jaxpr"]
            outs = _flatten_jaxpr(sub.jaxpr, sub.consts, ins, nodes)
        else:
            outs = [[None, False] for _ in eqn.outvars]
            nodes.append((eqn, ins, outs))
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def _bind(eqn, args):
    params = eqn.primitive.get_bind_params(eqn.params)
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*args, **params)
    return out if eqn.primitive.multiple_results else [out]


def _batchable(eqn) -> bool:
    """A random op on one threefry key (scalar operands): batching it over stacked keys
    keeps its bits."""
    if eqn.primitive not in (*_KEY_OPS, _prng.random_bits_p):
        return False
    impl = getattr(eqn.invars[0].aval.dtype, "_impl", None)
    return (impl is not None and impl.name == "threefry2x32"
            and all(v.aval.shape == () for v in eqn.invars))


def _group_of(eqn):
    """Which batched call an op joins: same primitive, params and operand types; bits by
    size class (threefry's counters are the flat index, so bits(k, n) is the first n of
    bits(k, m) for n <= m when partitionable; else the exact flat size)."""
    if eqn.primitive is _prng.random_bits_p:
        size = math.prod(eqn.params["shape"])
        size = (size - 1).bit_length() if jax.config.jax_threefry_partitionable else size
        return (eqn.primitive, eqn.params["bit_width"], size)
    return (eqn.primitive, tuple(sorted(eqn.params.items())),
            tuple((v.aval.shape, v.aval.dtype) for v in eqn.invars))


# Threefry-2x32 written out in jnp, for random bits. jax lowers its threefry2x32 primitive
# on CPU as a rolled 5-trip while loop (unrolled on GPU), and XLA:CPU runs it as 5
# passes over two full-size uint32 arrays: 3.7-5.4 s for VGG-16's 102,760,448-number
# kernel at load 6. The 20 rounds written out fuse with the counters' iota, and with the
# consumer of the bits (the uniform or normal transform), into one elementwise loop:
# 0.3-0.4 s, and each such fusion compiles faster than the loop. The bits are jax's
# (tests/test_init_speed.py pins them). Key derivations (fold_in, split) stay on jax's
# primitive: their few numbers feed many consumers, and XLA copied the written-out rounds
# into each one (ResNet-50's jitted init compiled in 9.2 s of CPU; 5.6 s with every op on
# jax's primitive, 5.0 s with the bits alone written out).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotate_left(x, r):
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _threefry2x32(k1, k2, x0, x1):
    """Threefry-2x32, 20 rounds (Salmon et al. 2011; jax's threefry2x32): key words k1, k2
    and counter words x0, x1 (uint32, broadcast together) -> the two hashed words."""
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotate_left(x1, r)
        x0, x1 = x0 + ks[(i + 1) % 3], x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def _threefry_bits(keys, bit_width: int, size: int):
    """random_bits(key, bit_width, (size,)) for each of the stacked threefry `keys` (k,):
    (k, size) uint<bit_width>, as jax's partitionable scheme computes them: the two hashed
    words of counter i = (0, i), xor-ed (then truncated below 32 bits)."""
    data = jax.random.key_data(keys)
    counter = jax.lax.broadcasted_iota(jnp.uint32, (1, size), 1)
    x0, x1 = _threefry2x32(data[:, :1], data[:, 1:], jnp.zeros_like(counter), counter)
    return (x0 ^ x1).astype(jnp.dtype(f"uint{bit_width}"))


def _run_batched(group):
    """One call for a group of ready random ops; each op's outputs get their slice."""
    eqn = group[0][0]
    if eqn.primitive is _prng.random_bits_p:
        sizes = [math.prod(e.params["shape"]) for e, _, _ in group]
        keys = jnp.stack([ins[0][0] for _, ins, _ in group])
        width, size = eqn.params["bit_width"], max(sizes)
        if jax.config.jax_threefry_partitionable and width <= 32 and size < 2 ** 32:
            bits = _threefry_bits(keys, width, size)
        else:  # 64 bits, or the original scheme: jax's primitive
            bits = _prng.random_bits_p.bind(keys, bit_width=width, shape=(size,))
        results = [bits[i, :n].reshape(e.params["shape"])
                   for i, (n, (e, _, _)) in enumerate(zip(sizes, group))]
    else:
        args = [jnp.stack([jnp.asarray(ins[i][0], v.aval.dtype) for _, ins, _ in group])
                for i, v in enumerate(eqn.invars)]
        out, = _bind(eqn, args)
        results = list(out)
    for (_, _, (cell,)), value in zip(group, results):
        cell[:] = value, True


def _eval_batched(closed, *args):
    """Evaluate `closed` (a ClosedJaxpr) on `args` with its independent random ops batched.

    Ordinary equations run in order as soon as their inputs are ready; ready random ops
    wait, and when nothing else can run they run grouped (key derivations first, so that
    the bits of every kernel end up in as few calls as possible).
    """
    nodes = []
    outs = _flatten_jaxpr(closed.jaxpr, closed.consts, [[a, True] for a in args], nodes)
    while nodes:
        ready = []
        for eqn, ins, cells in nodes:
            if not all(done for _, done in ins):
                continue
            if _batchable(eqn):
                ready.append((eqn, ins, cells))
            else:
                for cell, value in zip(cells, _bind(eqn, [v for v, _ in ins])):
                    cell[:] = value, True
        groups = collections.defaultdict(list)
        for node in [n for n in ready if n[0].primitive in _KEY_OPS] or ready:
            groups[_group_of(node[0])].append(node)
        for group in groups.values():
            _run_batched(group)
        nodes = [n for n in nodes if not all(done for _, done in n[2])]
    return [value for value, _ in outs]


def _trace_init(raw: Callable, key, spec):
    """The ClosedJaxpr of the array leaves of raw(key, spec), and the rest of its output."""
    static = {}

    def arrays_only(k):
        with raw_init():
            leaves, static["tree"] = jax.tree.flatten(raw(k, spec))
        static["leaves"] = [None if isinstance(x, jax.Array) else x for x in leaves]
        return [x for x in leaves if isinstance(x, jax.Array)]

    return jax.make_jaxpr(arrays_only)(key), static


def _plan(raw: Callable, key, spec):
    """A cache entry: (jitted batched init, static output parts), or None to run raw.

    Raw (op by op, as before) when the init has fewer than `_JIT_MIN_RANDOM_OPS` random
    ops (its few kernels are compiled once per shape and shared by every model in the
    process, cheaper than compiling one program per model), has effects, or needs
    concrete values (`np.asarray(key)`).
    """
    try:
        closed, static = _trace_init(raw, key, spec)
    except jax.errors.JAXTypeError:
        return None
    nodes = []
    _flatten_jaxpr(closed.jaxpr, closed.consts, [[None, True]], nodes)
    if closed.effects or sum(_batchable(eqn) for eqn, _, _ in nodes) < _JIT_MIN_RANDOM_OPS:
        return None
    return jax.jit(functools.partial(_eval_batched, closed)), static


def cached_init(raw: Callable, cache: dict, key, spec):
    """raw(key, spec); on a traced key, through the jitted batched init cached for the spec."""
    if (_prng is None or key is None or getattr(_local, "raw", False)
            or not isinstance(key, jax.core.Tracer)):
        return raw(key, spec)
    leaves, treedef = jax.tree.flatten(spec)
    entry_key = (treedef, tuple((s.shape, s.dtype) for s in leaves),
                 tuple(np.shape(key)), getattr(key, "dtype", None),
                 jax.config.jax_threefry_partitionable, jax.config.jax_enable_x64)
    if entry_key not in cache:
        cache[entry_key] = _plan(raw, key, spec)
    if cache[entry_key] is None:
        return raw(key, spec)
    jitted, static = cache[entry_key]
    arrays = iter(jitted(key))
    leaves = [next(arrays) if x is None else (np.array(x) if isinstance(x, np.ndarray)
                                              else x) for x in static["leaves"]]
    return jax.tree.unflatten(static["tree"], leaves)
