"""A conformance battery for any layer: `check_layer`, and each check on its own.

    import jax, jaxlayers as jl
    jl.testing.check_layer(jl.Dense(3), (2, 4), jax.random.key(0))
    jl.testing.check_layer(my_layer, (2, 4), key, random=True,
                           bad_inputs=[((2, 5), ValueError, "MyLayer: .*features")])

Every check raises AssertionError with a message naming the layer, the input and what
went wrong. Each compiles at most one or two small functions (jit, vmap, grad and the
finite differences share one compiled call per check), and `check_layer` builds params
and inputs once for all of them. The checks, in the order `check_layer` runs them:

  shapes        init/apply vs `jl.output_shape`; the batch size changes no param shape;
                apply returns state of init's structure, shapes and dtypes (both modes)
  transforms    jit(apply) == apply without jit; vmap over an extra leading axis ==
                per-slice apply; jax.grad of a projection w.r.t. params and input runs
                and is finite
  keys          same key -> bit-identical training output; `random=True`: other keys
                change it and key=None raises a ValueError naming the layer;
                `random=False`: the output ignores the key and key=None is fine
  bad_inputs    each (input_spec, exception type, regex) raises at trace time, both modes
  jvp           float64: <J v, u> == <v, Jᵀ u> (forward mode against its transpose, the
                reverse mode) and J v against central finite differences of apply
  second_order  float64: w·H·v for a projection of apply and random directions v, w,
                Hv by forward-over-reverse AD (jvp of grad: through custom_vjp rules
                too, as PyTorch's gradgradcheck), against central differences
  gradients     float64: `jl.gradcheck_layer` (params and input)
  bfloat16      params and input in bfloat16: runs, output is bfloat16, finite, and close
                to float32 on the same (rounded) values

Modes: transforms' jit/vmap comparisons use training=False (batch statistics make a
vmapped BatchNorm differ from per-slice calls while training); every other check runs
training=True with a fixed key (`fold_in(key, 1)`), where dropout and batch statistics
live, so derivatives are checked through them with the randomness frozen.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxlayers._checks import as_spec
from jaxlayers.core import Layer, Masked, as_layer, output_shape
from jaxlayers._paths import leaf_paths
from jaxlayers.grad_check import (Flat, cast_floats, check_layer_gradients, float_leaves,
                                  float_struct_leaves, is_float_array, numpy_rng, project,
                                  projection, random_input)

__all__ = ["check_layer", "check_shapes", "check_transforms", "check_keys",
           "check_bad_inputs", "check_jvp", "check_second_order", "check_gradients",
           "check_bfloat16", "CHECKS"]

CHECKS = ("shapes", "transforms", "keys", "bad_inputs", "jvp", "second_order", "gradients",
          "bfloat16")

# float32 comparisons of one computation done two ways (jit vs eager, vmap vs slices):
# only the summation order may differ.
_F32_RTOL, _F32_ATOL = 1e-5, 1e-6
# bfloat16 keeps 8 significant bits (relative rounding 2**-9 per op): a few ops deep,
# errors of ~1-2% of the output's scale are rounding, not bugs.
_BF16_TOL = 5e-2


class _Subject:
    """One layer on one input: params, state, concrete inputs and keys, built once."""

    def __init__(self, layer, input_shape, key, input_dtype=jnp.float32):
        self.layer = as_layer("check_layer", layer)
        if key is None:
            raise ValueError("check_layer: key must be a PRNG key, got None.")
        self.input_shape, self.input_dtype, self.key = input_shape, input_dtype, key
        self.spec = as_spec(input_shape, input_dtype)
        self.where = f"{self.layer.name} on {_fmt(self.spec)}"
        rng = numpy_rng(key)
        self.x = random_input(input_shape, input_dtype, rng)
        self.x2 = random_input(input_shape, input_dtype, rng)
        self.train_key = jax.random.fold_in(key, 1)
        with _failure(self.where, "init(key, input_shape)"):
            self.params, self.state = self.layer.init(key, self.spec)

    def apply(self, params, state, x, training, key=None):
        key = key if key is not None or not training else self.train_key
        return self.layer.apply(params, state, x, key=key, training=training)

    def fail(self, message: str):
        raise AssertionError(f"{self.where}: {message}")


class _failure:
    """Turn an exception inside `what` into an AssertionError naming the layer."""

    def __init__(self, where: str, what: str):
        self.where, self.what = where, what

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, AssertionError):
            return False
        raise AssertionError(f"{self.where}: {self.what} raised {exc_type.__name__}: "
                             f"{exc}") from exc


def _fmt(spec) -> str:
    if isinstance(spec, Masked):
        return f"Masked({_fmt(spec.values)}, {_fmt(spec.mask)})"
    if isinstance(spec, (tuple, list)):
        return "(" + ", ".join(_fmt(s) for s in spec) + ")"
    if isinstance(spec, dict):
        return "{" + ", ".join(f"{k!r}: {_fmt(v)}" for k, v in spec.items()) + "}"
    return f"{jnp.dtype(spec.dtype).name}{tuple(spec.shape)}"


def _at(path: str) -> str:
    return f" at {path!r}" if path else ""


def _struct(tree) -> Any:
    return jax.tree.map(lambda a: (tuple(np.shape(a)), str(jnp.result_type(a))), tree)


def _compare(subject, what, got, want, rtol, atol):
    """AssertionError unless two output trees agree (structure, shape, dtype, values).

    chex does the checks; on a failure the message names the layer, the output path, the
    first bad index and both values there."""
    if jax.tree.structure(got) != jax.tree.structure(want):
        subject.fail(f"{what}: tree structures differ: {jax.tree.structure(got)} vs "
                     f"{jax.tree.structure(want)}.")
    for path, g, w in zip(leaf_paths(want), jax.tree.leaves(got), jax.tree.leaves(want)):
        g, w = np.asarray(g), np.asarray(w)
        try:
            chex.assert_trees_all_equal_shapes_and_dtypes(g, w)
        except AssertionError:
            subject.fail(f"{what}: output{_at(path)} is {g.dtype}{g.shape}, expected "
                         f"{w.dtype}{w.shape}.")
        try:
            if is_float_array(w):
                g64, w64 = g.astype(np.float64), w.astype(np.float64)
                scale = max(1.0, float(np.max(np.abs(w64), initial=0.0)))
                # non-finite outputs fail (NaN == NaN is no agreement); atol is relative
                # to the output's scale
                chex.assert_tree_all_finite((g64, w64))
                chex.assert_trees_all_close(g64, w64, rtol=rtol, atol=atol * scale)
            else:
                chex.assert_trees_all_equal(g, w)
        except AssertionError as exc:
            if is_float_array(w):
                bad = ~(np.abs(g64 - w64) <= atol * scale + rtol * np.abs(w64))
            else:
                bad = g != w
            if not np.any(bad):  # chex failed where the mask does not: keep its message
                subject.fail(f"{what}: output{_at(path)} differs: {exc}")
            i = np.unravel_index(int(np.argmax(bad)), w.shape)
            subject.fail(f"{what}: output{_at(path)} differs at {tuple(int(j) for j in i)}: "
                         f"{g[i]!r} vs {w[i]!r} ({int(np.sum(bad))} of {w.size} entries).")


def _base_names(layer) -> set[str]:
    """The names of a layer and all its children, without arguments: Activation, Serial."""
    names = {layer.name} if isinstance(layer, Layer) else {"Layer"}
    children = getattr(layer, "children", None)
    if children is not None:
        for child in (children.values() if isinstance(children, dict) else children):
            names |= _base_names(child)
    return names


def _names_layer(layer, message: str) -> bool:
    names = _base_names(layer) - {"Layer"}
    return not names or any(re.search(rf"\b{re.escape(n)}\b", message, re.IGNORECASE)
                            for n in names)


def _batched(spec, n: int):
    """The spec with batch size n (leading axis of every leaf)."""
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct((n,) + tuple(s.shape[1:]), s.dtype),
                        spec)


# --------------------------------------------------------------------------- the checks

def _check_shapes(s: _Subject) -> None:
    layer, first = s.layer, jax.tree.leaves(s.spec)[0]
    n = first.shape[0] if first.shape else None  # a rank-0 input has no batch axis
    with _failure(s.where, "jl.output_shape"):
        expected = output_shape(layer, s.spec)
    with _failure(s.where, "jax.eval_shape(init)"):
        abstract = jax.eval_shape(lambda k: layer.init(k, s.spec), s.key)
    if _struct(abstract) != _struct((s.params, s.state)):
        s.fail(f"init's params/state differ between a concrete and an abstract (eval_shape) "
               f"call: {_struct((s.params, s.state))} vs {_struct(abstract)}.")
    if n is not None:
        with _failure(s.where, f"jax.eval_shape(init) with batch size {n + 1}"):
            bigger = jax.eval_shape(
                lambda k: layer.init(k, _batched(s.spec, n + 1)), s.key)
        if _struct(bigger) != _struct((s.params, s.state)):
            s.fail(f"params/state depend on the batch size: batch {n} gives "
                   f"{_struct((s.params, s.state))}, batch {n + 1} gives {_struct(bigger)}.")
    for training in (False, True):
        mode = f"apply(training={training})"

        def abstract_apply(spec):
            return jax.eval_shape(lambda p, st, x: s.apply(p, st, x, training),
                                  s.params, s.state, spec)

        with _failure(s.where, mode):
            out, new_state = abstract_apply(s.spec)
        got = jax.tree.map(lambda a: tuple(a.shape), out)
        if got != expected:
            s.fail(f"{mode} returns shapes {got}, but jl.output_shape says {expected}.")
        if _struct(new_state) != _struct(s.state):
            s.fail(f"{mode} returns state {_struct(new_state)}, but init made "
                   f"{_struct(s.state)}; the state must keep its structure, shapes and "
                   f"dtypes (lax.scan and train loops carry it).")
        in_floats = {str(a.dtype) for a in float_struct_leaves(s.spec)}
        out_floats = {str(a.dtype) for a in float_struct_leaves(out)}
        if len(in_floats) == 1 and out_floats - in_floats:
            s.fail(f"{mode} turns {in_floats.pop()} input into {sorted(out_floats)} output.")
        if n is None:
            continue
        with _failure(s.where, f"{mode} with batch size {n + 1}"):
            out_big = jax.tree.map(lambda a: tuple(a.shape), abstract_apply(
                _batched(s.spec, n + 1))[0])
        want_big = jax.tree.map(lambda a: (n + 1,) + tuple(a.shape[1:]), out)
        if out_big != want_big:
            s.fail(f"{mode} output does not keep the batch axis first: batch {n + 1} gives "
                   f"{out_big}, expected {want_big}.")


def _check_transforms(s: _Subject) -> None:
    with _failure(s.where, "apply(training=True)"):
        out = jax.eval_shape(lambda p, st, x: s.apply(p, st, x, True), s.params, s.state,
                             s.x)[0]
    us = [u.astype(np.float32) for u in projection(out, 0)]

    def vmapped_and_grad(params, state, x, x2, us):
        xb = jax.tree.map(lambda a, b: jnp.stack([a, b]), x, x2)
        yb = jax.vmap(lambda xi: s.apply(params, state, xi, False))(xb)

        def loss(diff):
            p, xx = _combine(diff, rest, treedef)
            return project(s.apply(p, state, xx, True)[0], us)

        leaves, treedef = jax.tree.flatten((params, x))
        diff = [a if is_float_array(a) else None for a in leaves]
        rest = [None if is_float_array(a) else a for a in leaves]
        return yb, (jax.grad(loss)(diff) if float_leaves(diff) and us else None)

    # the reference runs op by op: eager, as a user calls apply (jax.disable_jit would
    # also unroll library code such as jax.image.resize, at many times the cost)
    with _failure(s.where, "apply without jit"):
        eager = s.apply(s.params, s.state, s.x, False)
    with _failure(s.where, "jax.jit(apply)"):
        fwd = jax.jit(lambda p, st, x: s.apply(p, st, x, False))
        want = [fwd(s.params, s.state, x) for x in (s.x, s.x2)]  # one compile
    with _failure(s.where, "jax.jit of jax.vmap(apply) and jax.grad(apply)"):
        yb, grads = jax.jit(vmapped_and_grad)(s.params, s.state, s.x, s.x2, us)
    _compare(s, "jit(apply) vs apply without jit (training=False)", want[0], eager,
             _F32_RTOL, _F32_ATOL)
    for i in (0, 1):
        got = jax.tree.map(lambda a: a[i], yb)
        _compare(s, f"vmap(apply)[{i}] vs apply on slice {i} (training=False)", got, want[i],
                 _F32_RTOL, _F32_ATOL)
    if grads is not None:
        names = leaf_paths((s.params, s.x), ("params", "x"))
        for path, g in zip([p for p, a in zip(names, jax.tree.leaves((s.params, s.x)))
                            if is_float_array(a)], float_leaves(grads)):
            try:
                chex.assert_tree_all_finite(np.asarray(g))
            except AssertionError:
                s.fail(f"jax.grad of a projection of apply(training=True) is not finite "
                       f"at {path}: {np.asarray(g)}.")


def _combine(diff, rest, treedef):
    return jax.tree.unflatten(treedef, [d if r is None else r for d, r in zip(diff, rest)])


def _check_keys(s: _Subject, random: bool) -> None:
    def run(params, state, x, key):
        return s.apply(params, state, x, True, key=key)

    fn = jax.jit(run)
    keys = [jax.random.fold_in(s.key, i) for i in (2, 3, 4)]
    with _failure(s.where, "jax.jit(apply)(training=True, key=...)"):
        first = fn(s.params, s.state, s.x, s.train_key)
        again = fn(s.params, s.state, s.x, s.train_key)
        others = [fn(s.params, s.state, s.x, k) for k in keys]

    def same(a, b):
        return all(np.array_equal(np.asarray(u), np.asarray(v), equal_nan=True)
                   for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    if not same(first, again):
        s.fail("two calls of apply(training=True) with the same key differ; the output "
               "must be a function of (params, state, x, key) only.")
    try:
        jax.eval_shape(lambda p, st, x: s.layer.apply(p, st, x, key=None, training=True),
                       s.params, s.state, s.spec)
        raised = None
    except Exception as exc:  # noqa: BLE001 - we report whatever it was
        raised = exc
    if random:
        if all(same(first, o) for o in others):
            s.fail("apply(training=True) gives identical output for 4 different keys; "
                   "a random layer's output must change with the key (or set random=False).")
        if raised is None:
            s.fail("apply(training=True, key=None) did not raise; a random layer must raise "
                   "a ValueError naming itself when the key is missing.")
        if not isinstance(raised, ValueError) or not _names_layer(s.layer, str(raised)):
            s.fail(f"apply(training=True, key=None) must raise a ValueError naming the layer "
                   f"(one of {sorted(_base_names(s.layer))}), got "
                   f"{type(raised).__name__}: {raised}")
    else:
        if not all(same(first, o) for o in others):
            s.fail("apply(training=True) output changes with the key; a layer registered "
                   "with random=False must ignore it (or set random=True).")
        if raised is not None:
            s.fail(f"apply(training=True, key=None) raised {type(raised).__name__}: {raised}; "
                   f"a layer without randomness must not need a key.")


def _check_bad_inputs(s: _Subject, bad_inputs) -> None:
    for entry in bad_inputs:
        spec, exc_type, pattern = entry
        struct = as_spec(spec, s.input_dtype)
        for training in (False, True):
            what = f"apply(training={training}) on bad input {_fmt(struct)}"
            try:
                jax.eval_shape(lambda p, st, x: s.apply(p, st, x, training),
                               s.params, s.state, struct)
            except exc_type as exc:
                if not re.search(pattern, str(exc)):
                    s.fail(f"{what} raised {type(exc).__name__} with message {str(exc)!r}, "
                           f"which does not match {pattern!r}.")
                continue
            except Exception as exc:  # noqa: BLE001 - wrong type: report it
                s.fail(f"{what} raised {type(exc).__name__}: {exc}; expected "
                       f"{exc_type.__name__} matching {pattern!r}.")
            s.fail(f"{what} did not raise; expected {exc_type.__name__} matching {pattern!r}.")


class _F64:
    """The layer as F(theta) = <apply(params, x), u> over the float leaves, in float64."""

    def __init__(self, s: _Subject, seed: int = 0):
        self.state = cast_floats(s.state, np.float64)
        self.flat = Flat(cast_floats((s.params, s.x), np.float64), ("params", "x"))
        self.s = s

        def outputs(theta):
            p, x = self.flat.unflatten(theta)
            return s.apply(p, self.state, x, True)[0]

        self.outputs = outputs
        out = jax.eval_shape(outputs, jax.ShapeDtypeStruct((self.flat.n,), jnp.float64))
        self.us = projection(out, seed)
        rng = np.random.default_rng([seed, 7])
        v = rng.standard_normal((2, self.flat.n))
        self.directions = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)

    @property
    def empty(self) -> bool:
        return self.flat.n == 0 or not self.us

    def scalar(self, theta, us):
        return project(self.outputs(theta), us)


def _check_jvp(s: _Subject, eps: float = 1e-6) -> None:
    with jax.enable_x64(True):
        with _failure(s.where, "apply on float64 params and input"):
            f = _F64(s)
        if f.empty:
            return

        def outs(t):
            return [leaf.astype(jnp.float64) for leaf in float_leaves(f.outputs(t))]

        def run(theta, v, us):
            # one linearization serves both modes: jax.vjp is its transpose too
            _, jvp = jax.linearize(outs, theta)
            (jtu,) = jax.linear_transpose(jvp, theta)(list(us))
            ends = jax.vmap(outs)(jnp.stack([theta + eps * v, theta - eps * v]))
            return jvp(v), jtu, [(e[0] - e[1]) / (2 * eps) for e in ends]

        v = f.directions[0]
        with _failure(s.where, "forward-mode differentiation (jax.linearize) of apply "
                               "(float64)"):
            jv, jtu, fd = jax.device_get(jax.jit(run)(f.flat.theta, v, f.us))
    lhs = sum(float(np.sum(a * u)) for a, u in zip(jv, f.us))
    rhs = float(np.sum(v * jtu))
    size = sum(float(np.sum(np.abs(a * u))) for a, u in zip(jv, f.us)) + \
        float(np.sum(np.abs(v * jtu)))
    if not np.isfinite(lhs) or not abs(lhs - rhs) <= 1e-9 * size + 1e-12:
        s.fail(f"forward and reverse mode disagree (float64): <J v, u> = {lhs!r} but "
               f"<v, J^T u> = {rhs!r}; a jvp or transpose rule is wrong.")
    for i, (a, b) in enumerate(zip(jv, fd)):
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        err = np.abs(a - b)
        if not np.all(err <= 1e-7 * scale + 1e-5 * np.abs(b)):
            j = np.unravel_index(int(np.argmax(np.where(np.isfinite(err), err, np.inf))),
                                 np.shape(b))
            s.fail(f"jax.jvp disagrees with central finite differences (float64, "
                   f"eps={eps:g}) on output leaf {i} at {tuple(int(k) for k in j)}: "
                   f"{a[j]!r} vs {b[j]!r}.")


def _check_second_order(s: _Subject, eps: float = 1e-4) -> None:
    with jax.enable_x64(True):
        with _failure(s.where, "apply on float64 params and input"):
            f = _F64(s)
        if f.empty:
            return
        grad = jax.grad(f.scalar)

        def hvp(theta, v, us):
            # forward over reverse compiles faster than double backward (scan layers) and
            # also goes through custom_vjp rules, whose bwd it differentiates
            return jax.jvp(lambda t: grad(t, us), (theta,), (v,))[1]

        def run(theta, directions, us):
            # w·H·v by central differences of F alone: forward passes compile in a
            # fraction of the time that differences of gradients take
            v, w = eps * directions[0], eps * directions[1]
            points = jnp.stack([theta, theta + v + w, theta + v - w, theta - v + w,
                                theta - v - w])
            values = jax.vmap(lambda t: f.scalar(t, us))(points)
            return hvp(theta, directions[0], us), values

        how = "forward over reverse (jax.jvp of jax.grad)"
        with _failure(s.where, f"Hessian-vector product by {how} of apply (float64)"):
            hv, values = jax.device_get(jax.jit(run)(f.flat.theta, f.directions, f.us))
    try:
        chex.assert_tree_all_finite(hv)
    except AssertionError:
        s.fail(f"a Hessian-vector product by {how} (float64) is not finite.")
    whv = float(f.directions[1] @ hv)
    numerical = float(values[1] - values[2] - values[3] + values[4]) / (4 * eps * eps)
    # rounding in those differences is ~1e-16·|F|/eps² = 1e-8·|F|; truncation ~eps²·F⁗
    if not abs(whv - numerical) <= 1e-5 * abs(numerical) + 1e-6 * (1 + abs(values[0])):
        s.fail(f"second derivatives are wrong (float64): for random unit directions v, w, "
               f"w·H·v by {how} is {whv!r} but central differences of a projection of "
               f"apply (eps={eps:g}) give {numerical!r}.")


def _check_gradients(s: _Subject, **tolerances) -> None:
    check_layer_gradients(s.layer, s.params, s.state, s.x, s.train_key, True, **{
        "eps": 1e-6, "rtol": 1e-5, "atol": 1e-7, "max_coords": 128, "seed": 0,
        **tolerances})


def _check_bfloat16(s: _Subject) -> None:
    p16, x16 = cast_floats((s.params, s.x), jnp.bfloat16)
    if not float_leaves((p16, x16)):
        return
    p32, x32 = cast_floats((p16, x16), np.float32)  # the same rounded values

    def run(p32, x32, p16, x16, state):
        return (s.apply(p32, state, x32, True)[0], s.apply(p16, state, x16, True)[0])

    with _failure(s.where, "apply with bfloat16 params and input"):
        y32, y16 = jax.jit(run)(p32, x32, p16, x16, s.state)
    takes_floats = bool(float_leaves(x16))
    for path, a, b in zip(leaf_paths(y16), jax.tree.leaves(y16), jax.tree.leaves(y32)):
        if not is_float_array(b):
            continue
        if takes_floats and a.dtype != jnp.bfloat16:
            s.fail(f"bfloat16 input gives {a.dtype} output{_at(path)}; compute should follow the "
                   f"input's dtype (or the layer's dtype=).")
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        try:
            chex.assert_tree_all_finite(a)
        except AssertionError:
            s.fail(f"bfloat16 output{_at(path)} is not finite.")
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        try:
            chex.assert_trees_all_close(a, b, rtol=0.0, atol=_BF16_TOL * scale)
        except AssertionError:
            err = np.abs(a - b)
            i = np.unravel_index(int(np.argmax(err)), err.shape)
            s.fail(f"bfloat16 output{_at(path)} is far from float32 on the same values: "
                   f"{a[i]!r} vs {b[i]!r} at {tuple(int(k) for k in i)} "
                   f"(tolerance {_BF16_TOL} x {scale:.3g}).")


# ----------------------------------------------------------------------- public wrappers

def check_shapes(layer, input_shape, key, *, input_dtype=jnp.float32) -> None:
    """init/apply shapes agree with `jl.output_shape`, state keeps its structure, the batch
    size changes no param, and the batch axis stays first (abstract: nothing compiles)."""
    _check_shapes(_Subject(layer, input_shape, key, input_dtype))


def check_transforms(layer, input_shape, key, *, input_dtype=jnp.float32) -> None:
    """jit(apply) == apply, vmap over an extra leading axis == per-slice apply (inference),
    and jax.grad of a projection (training) w.r.t. params and input is finite."""
    _check_transforms(_Subject(layer, input_shape, key, input_dtype))


def check_keys(layer, input_shape, key, *, input_dtype=jnp.float32, random=False) -> None:
    """Same key -> bit-identical training output; `random` says whether the key matters."""
    _check_keys(_Subject(layer, input_shape, key, input_dtype), random)


def check_bad_inputs(layer, input_shape, key, bad_inputs: Iterable = (), *,
                     input_dtype=jnp.float32) -> None:
    """Each (input_spec, exception type, regex) in `bad_inputs` makes apply raise that
    exception with a matching message, at trace time, in both modes. An input_spec is a
    shape (in `input_dtype`), a ShapeDtypeStruct, a `jl.Masked` or a tuple of those."""
    _check_bad_inputs(_Subject(layer, input_shape, key, input_dtype), tuple(bad_inputs))


def check_jvp(layer, input_shape, key, *, input_dtype=jnp.float32) -> None:
    """Forward mode in float64: <J v, u> == <v, Jᵀ u>, and J v matches finite differences."""
    _check_jvp(_Subject(layer, input_shape, key, input_dtype))


def check_second_order(layer, input_shape, key, *, input_dtype=jnp.float32) -> None:
    """Second derivatives in float64 (as PyTorch's gradgradcheck): w·H·v by automatic
    differentiation of the gradient matches central differences of the projected output."""
    _check_second_order(_Subject(layer, input_shape, key, input_dtype))


def check_gradients(layer, input_shape, key, *, input_dtype=jnp.float32, **tolerances) -> None:
    """`jl.gradcheck_layer` in training mode with a frozen key; `tolerances` are its
    eps/rtol/atol/max_coords/seed. Raises GradcheckError (an AssertionError)."""
    _check_gradients(_Subject(layer, input_shape, key, input_dtype), **tolerances)


def check_bfloat16(layer, input_shape, key, *, input_dtype=jnp.float32) -> None:
    """bfloat16 params and input: runs, gives bfloat16, finite output close to float32."""
    _check_bfloat16(_Subject(layer, input_shape, key, input_dtype))


def check_layer(layer, input_shape, key, *, input_dtype=jnp.float32, random: bool = False,
                bad_inputs: Iterable = (), checks="all", **tolerances) -> None:
    """Run the conformance battery (see the module docstring) on any layer.

    Args:
      layer: a `jl.Layer` or an (init, apply) pair.
      input_shape: batch axis first; a ShapeDtypeStruct, a `jl.Masked` or a tuple of those
        for several inputs; an array is used as the input itself.
      key: drives init, the random inputs and the training keys.
      input_dtype: dtype of inputs given as plain shapes.
      random: the layer uses its key while training (Dropout).
      bad_inputs: (input_spec, exception type, regex) triples apply must raise.
      checks: "all" or names from `CHECKS`.
      tolerances: passed to the gradients check (`jl.gradcheck`'s eps, rtol, ...).

    Raises:
      AssertionError: the first check that fails, naming the layer and the input.
      ValueError: an unknown check name.
    """
    names = CHECKS if checks == "all" else (checks,) if isinstance(checks, str) else \
        tuple(checks)
    unknown = [c for c in names if c not in CHECKS]
    if unknown:
        raise ValueError(f"check_layer: checks must be 'all' or names from {list(CHECKS)}, "
                         f"got {unknown}.")
    s = _Subject(layer, input_shape, key, input_dtype)
    run = {"shapes": lambda: _check_shapes(s), "transforms": lambda: _check_transforms(s),
           "keys": lambda: _check_keys(s, random),
           "bad_inputs": lambda: _check_bad_inputs(s, tuple(bad_inputs)),
           "jvp": lambda: _check_jvp(s), "second_order": lambda: _check_second_order(s),
           "gradients": lambda: _check_gradients(s, **tolerances),
           "bfloat16": lambda: _check_bfloat16(s)}
    for name in CHECKS:
        if name in names:
            run[name]()
