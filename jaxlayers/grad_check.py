"""Finite-difference gradient checks in float64: `gradcheck`, `gradcheck_layer`.

    import jax, jax.numpy as jnp, jaxlayers as jl
    report = jl.gradcheck(lambda w, x: jnp.tanh(x @ w), w, x)    # raises on a mismatch
    print(report)                                                  # per-leaf errors
    jl.gradcheck_layer(jl.Dense(3), (2, 4), jax.random.key(0))     # params and input
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxlayers._checks import as_spec, is_shape
from jaxlayers._paths import leaf_paths
from jaxlayers.core import as_layer
from jaxlayers.masked import Masked

__all__ = ["gradcheck", "gradcheck_layer", "GradcheckError", "GradcheckReport", "LeafCheck"]

# Perturbed evaluations run vmapped; past this many float64 entries of perturbed inputs
# at once they run in chunks (lax.map with batch_size), so memory stays bounded.
_MAX_BATCH_ENTRIES = 1 << 22


class GradcheckError(AssertionError):
    """The analytic gradient (jax.grad) disagrees with central finite differences.

    A subclass of AssertionError, like `numpy.testing`, chex and `jax.test_util.check_grads`:
    a failed check is a test failure, not bad input (bad arguments to `gradcheck` raise
    ValueError/TypeError). `report` holds the full `GradcheckReport`.
    """

    def __init__(self, message: str, report: "GradcheckReport"):
        super().__init__(message)
        self.report = report


class LeafCheck(NamedTuple):
    """The check of one differentiated leaf.

    path: where the leaf sits, e.g. "args/0/kernel" or "params/1/gamma" (jl.path_strings' format).
    coords: the flat (row-major) indices checked; all of them unless the leaf has more
      than `max_coords` entries, then a sorted sample drawn with `seed`.
    max_abs_err, max_rel_err: over the checked coordinates, |analytic - numerical| and
      that divided by max(|analytic|, |numerical|, atol).
    worst_index, worst_analytic, worst_numerical: the coordinate furthest outside the
      tolerance (or the largest error when all pass).
    nonfinite: entries of the analytic gradient (the whole leaf) that are inf or nan.
    """

    path: str
    shape: tuple
    coords: tuple
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple
    worst_analytic: float
    worst_numerical: float
    failed: int
    nonfinite: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def checked(self) -> int:
        return len(self.coords)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.nonfinite == 0


class GradcheckReport(NamedTuple):
    """What `gradcheck` compared: one `LeafCheck` per differentiated leaf, and the settings.

    `str(report)` prints a table; `report.ok` is True when every leaf passed.
    """

    leaves: tuple
    eps: float
    rtol: float
    atol: float
    projected: bool  # True when fn's output was not a scalar (checked via <fn(args), v>)

    @property
    def ok(self) -> bool:
        return all(leaf.ok for leaf in self.leaves)

    @property
    def failures(self) -> tuple:
        return tuple(leaf for leaf in self.leaves if not leaf.ok)

    def __str__(self) -> str:
        what = "a random projection <fn(args), v>" if self.projected else "fn"
        head = (f"gradcheck of {what}: {len(self.leaves)} leaves, "
                f"{sum(c.checked for c in self.leaves)} coordinates, eps={self.eps:g}, "
                f"rtol={self.rtol:g}, atol={self.atol:g}: {'ok' if self.ok else 'FAILED'}")
        rows = [("leaf", "shape", "checked", "max abs err", "max rel err", "")]
        for c in self.leaves:
            status = "ok" if c.ok else _describe(c)
            rows.append((c.path, str(c.shape), f"{c.checked}/{c.size}",
                         f"{c.max_abs_err:.3g}", f"{c.max_rel_err:.3g}", status))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  " + "  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5]
                 for r in rows]
        return "\n".join([head] + [line.rstrip() for line in lines])


def _describe(c: LeafCheck) -> str:
    return f"FAILED ({_problems(c)})"


def _problems(c: LeafCheck) -> str:
    parts = []
    if c.nonfinite:
        parts.append(f"{c.nonfinite} non-finite analytic entries")
    if c.failed:
        parts.append(f"{c.failed} of {c.checked} coordinates off; worst at index "
                     f"{c.worst_index}: analytic {c.worst_analytic:.6g}, numerical "
                     f"{c.worst_numerical:.6g}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- helpers

def is_float_array(leaf: Any) -> bool:
    """True for an array (numpy, jax, tracer) with a real floating dtype."""
    return (isinstance(leaf, (np.ndarray, np.generic, jax.Array))
            and jnp.issubdtype(leaf.dtype, jnp.floating))


def cast_floats(tree: Any, dtype) -> Any:
    """Cast the real floating array leaves of `tree` to `dtype` on the host (numpy)."""
    return jax.tree.map(lambda a: np.asarray(a).astype(dtype) if is_float_array(a) else a,
                        tree)


def float_leaves(tree: Any) -> list:
    """The real floating array leaves of `tree`, in flattening order."""
    return [leaf for leaf in jax.tree.leaves(tree) if is_float_array(leaf)]


def float_struct_leaves(tree: Any) -> list:
    """Like `float_leaves` for a tree of ShapeDtypeStructs (from jax.eval_shape)."""
    return [s for s in jax.tree.leaves(tree) if jnp.issubdtype(s.dtype, jnp.floating)]


class Flat:
    """The real floating leaves of a tuple of pytrees as one float64 vector `theta`.

    Other leaves (integer ids, keys, Python scalars) are kept aside as constants and put
    back by `unflatten`, which is traceable (slices of `theta`).
    """

    def __init__(self, tree: tuple, names: Sequence[str]):
        leaves, self.treedef = jax.tree.flatten(tree)
        paths = leaf_paths(tree, names)
        self.leaves = leaves
        self.diff = [i for i, leaf in enumerate(leaves) if is_float_array(leaf)]
        self.paths = [paths[i] for i in self.diff]
        self.shapes = [tuple(np.shape(leaves[i])) for i in self.diff]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.offsets = np.cumsum([0] + self.sizes).tolist()
        self.n = self.offsets[-1]
        self.theta = (np.concatenate([np.asarray(leaves[i], np.float64).ravel()
                                      for i in self.diff])
                      if self.diff else np.zeros((0,), np.float64))

    def unflatten(self, theta) -> tuple:
        leaves = list(self.leaves)
        for j, i in enumerate(self.diff):
            leaves[i] = theta[self.offsets[j]:self.offsets[j + 1]].reshape(self.shapes[j])
        return jax.tree.unflatten(self.treedef, leaves)

    def sample(self, max_coords: int | None, seed: int) -> list[np.ndarray]:
        """Per leaf, the flat indices to check: all, or a seeded sample of max_coords."""
        out = []
        for j, size in enumerate(self.sizes):
            if max_coords is None or size <= max_coords:
                out.append(np.arange(size))
            else:
                rng = np.random.default_rng([seed, j + 1])
                out.append(np.sort(rng.choice(size, max_coords, replace=False)))
        return out


def projection(out_struct: Any, seed: int) -> list[np.ndarray]:
    """A fixed standard-normal cotangent (float64) per floating output leaf."""
    rng = np.random.default_rng([seed, 0])
    return [rng.standard_normal(s.shape) for s in float_struct_leaves(out_struct)]


def project(out: Any, vs: Sequence) -> Any:
    """<out, v> summed over the floating leaves of `out`, in the dtype of the vs."""
    return sum(jnp.sum(leaf.astype(v.dtype) * v) for leaf, v in zip(float_leaves(out), vs))


def map_batched(fn: Callable, xs: Any, width: int):
    """vmap `fn` over the leading axis of xs, in chunks when `width` x count is large."""
    count = jax.tree.leaves(xs)[0].shape[0]
    chunk = max(1, _MAX_BATCH_ENTRIES // max(width, 1))
    if chunk >= count:
        return jax.vmap(fn)(xs)
    return lax.map(fn, xs, batch_size=chunk)


def _key_seed(key) -> list[int]:
    return [int(v) for v in np.asarray(jax.random.key_data(key)).ravel()]


def numpy_rng(key, salt: int = 0) -> np.random.Generator:
    """A numpy Generator seeded by a JAX key (host-side randomness compiles nothing)."""
    return np.random.default_rng(_key_seed(key) + [salt])


def random_input(input_shape: Any, dtype, rng: np.random.Generator) -> Any:
    """A concrete input for `input_shape`, mirroring `as_spec` (numpy arrays).

    Shapes (in `dtype`) and float ShapeDtypeStructs get standard normals, integer ones
    values in [0, 4), bool ones fair coins; arrays are used as given; the mask of a
    `jl.Masked` spec is a random prefix mask (at least one valid step per row).
    """
    if isinstance(input_shape, Masked):
        values = random_input(input_shape.values, dtype, rng)
        mask_shape = tuple(as_spec(input_shape.mask, jnp.bool_).shape)
        if len(mask_shape) == 2:
            lengths = rng.integers(1, mask_shape[1] + 1, size=(mask_shape[0], 1))
            mask = np.arange(mask_shape[1])[None, :] < lengths
        else:
            mask = rng.random(mask_shape) < 0.5
        return Masked(values, mask)
    if isinstance(input_shape, jax.ShapeDtypeStruct) or is_shape(input_shape):
        struct = as_spec(input_shape, dtype)
        shape, dt = tuple(struct.shape), jnp.dtype(struct.dtype)
        if jnp.issubdtype(dt, jnp.floating):
            return rng.standard_normal(shape).astype(dt)
        if jnp.issubdtype(dt, jnp.integer):
            return rng.integers(0, 4, size=shape).astype(dt)
        if dt == jnp.bool_:
            return rng.random(shape) < 0.5
        raise TypeError(f"random_input: no random values for dtype {dt}; pass an array.")
    if hasattr(input_shape, "shape") and hasattr(input_shape, "dtype"):
        return np.asarray(input_shape)
    if isinstance(input_shape, (tuple, list)):
        return tuple(random_input(s, dtype, rng) for s in input_shape)
    if isinstance(input_shape, dict):
        return {k: random_input(s, dtype, rng) for k, s in input_shape.items()}
    return as_spec(input_shape)  # raises as_spec's TypeError naming the bad spec


# ----------------------------------------------------------------------------- the check

def _check_settings(eps, rtol, atol, max_coords):
    for name, value, least in (("eps", eps, "positive"), ("rtol", rtol, "non-negative"),
                               ("atol", atol, "non-negative")):
        if (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0
                or (name == "eps" and value == 0)):
            raise ValueError(f"gradcheck: {name} must be a {least} number, got {value!r}.")
    if max_coords is not None and (not isinstance(max_coords, int) or max_coords < 1):
        raise ValueError(f"gradcheck: max_coords must be a positive int or None, "
                         f"got {max_coords!r}.")


def run_gradcheck(fn: Callable, args: tuple, names: Sequence[str], *, eps: float,
                  rtol: float, atol: float, max_coords: int | None, seed: int,
                  label: str = "gradcheck") -> GradcheckReport:
    """The shared engine of `gradcheck` and `gradcheck_layer`; call it under enable_x64."""
    flat = Flat(cast_floats(args, np.float64), names)
    if not flat.diff:
        return GradcheckReport((), eps, rtol, atol, False)

    def call(theta):
        return fn(*flat.unflatten(theta))

    out_struct = jax.eval_shape(call, jax.ShapeDtypeStruct((flat.n,), jnp.float64))
    outs = float_struct_leaves(out_struct)
    if not outs:
        raise TypeError(f"{label}: fn must return floating-point output, got "
                        f"{jax.tree.map(lambda s: f'{s.dtype}{tuple(s.shape)}', out_struct)}.")
    projected = not (len(jax.tree.leaves(out_struct)) == 1 and outs[0].shape == ())
    vs = projection(out_struct, seed) if projected else [np.ones((), np.float64)]

    def scalar(theta, vs):
        return project(call(theta), vs)

    coords = flat.sample(max_coords, seed)
    idx = np.concatenate([c + o for c, o in zip(coords, flat.offsets)])
    k = idx.size
    steps = np.concatenate([np.full(k, eps), np.full(k, -eps)])

    @jax.jit
    def evaluate(theta, idx2, steps, vs):
        grad = jax.grad(scalar)(theta, vs)
        vals = map_batched(lambda a: scalar(theta.at[a[0]].add(a[1]), vs), (idx2, steps),
                           flat.n)
        return grad, vals

    grad, vals = jax.device_get(evaluate(flat.theta, np.concatenate([idx, idx]), steps, vs))
    # divide by the step actually taken: (theta + eps) - (theta - eps) in float64
    denom = (flat.theta[idx] + eps) - (flat.theta[idx] - eps)
    numerical = (vals[:k] - vals[k:]) / denom
    analytic = grad[idx]

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # nan/inf: reported
        leaves = _leaf_checks(flat, coords, grad, analytic, numerical, atol, rtol)
    report = GradcheckReport(tuple(leaves), eps, rtol, atol, projected)
    if not report.ok:
        lines = [f"{label}: the analytic gradient (jax.grad) and central finite differences "
                 f"disagree on {len(report.failures)} of {len(leaves)} leaves:"]
        lines += [f"  {c.path}: {_problems(c)}" for c in report.failures]
        low = sorted({str(s.dtype) for s in outs if s.dtype != jnp.float64})
        if low:
            lines.append(f"  note: fn returned {', '.join(low)} output from float64 inputs; "
                         f"finite differences need float64 all the way through.")
        raise GradcheckError("\n".join(lines) + "\n" + str(report), report)
    return report


def _leaf_checks(flat: Flat, coords, grad, analytic, numerical, atol, rtol) -> list:
    leaves, start = [], 0
    for j, c in enumerate(coords):
        a, n = analytic[start:start + c.size], numerical[start:start + c.size]
        start += c.size
        err = np.abs(a - n)
        allowed = atol + rtol * np.abs(n)
        bad = ~(err <= allowed)  # nan counts as bad
        score = np.where(np.isfinite(err), err / np.maximum(allowed, 1e-300), np.inf)
        w = int(np.argmax(score)) if c.size else 0
        rel = err / np.maximum(np.maximum(np.abs(a), np.abs(n)), max(atol, 1e-300))
        g = grad[flat.offsets[j]:flat.offsets[j + 1]]
        leaves.append(LeafCheck(
            path=flat.paths[j], shape=flat.shapes[j], coords=tuple(int(i) for i in c),
            max_abs_err=float(np.max(err)) if c.size else 0.0,
            max_rel_err=float(np.max(rel)) if c.size else 0.0,
            worst_index=tuple(int(i) for i in np.unravel_index(int(c[w]), flat.shapes[j]))
            if c.size else (),
            worst_analytic=float(a[w]) if c.size else 0.0,
            worst_numerical=float(n[w]) if c.size else 0.0,
            failed=int(np.sum(bad)), nonfinite=int(np.sum(~np.isfinite(g)))))
    return leaves


def gradcheck(fn: Callable, *args: Any, eps: float = 1e-6, rtol: float = 1e-5,
              atol: float = 1e-7, max_coords: int | None = 128,
              seed: int = 0) -> GradcheckReport:
    """Compare jax.grad of `fn` with central finite differences, in float64.

    Math: for each checked coordinate i of each floating leaf,
      numerical_i = (F(θ + eps·e_i) - F(θ - eps·e_i)) / (2·eps),  analytic_i = ∂F/∂θ_i,
      and it passes when |analytic_i - numerical_i| <= atol + rtol·|numerical_i|.
    F is fn itself when it returns a scalar; otherwise F(θ) = Σ <fn(args)_leaf, v_leaf>
    with fixed standard-normal v (seeded), which checks the whole vector-Jacobian product.

    Everything runs under `jax.enable_x64(True)`: real floating array leaves of `args`
    (float16/bfloat16/float32 too) are cast to float64 and differentiated; other leaves
    (integer ids, bools, PRNG keys, Python scalars) are passed through unchanged. All the
    perturbed evaluations run in one jit-compiled, vmapped call (chunked when large).

    Args:
      fn: maps `*args` (pytrees of arrays) to a scalar or to a pytree of arrays.
      eps: finite-difference step. rtol, atol: the tolerance above. The float64 defaults
        leave room for both errors of central differences, truncation ~eps²·|F‴|/6
        (~1e-13) and rounding ~1e-16·|F|/eps (~1e-10·|F|: under atol for |F| up to
        ~1000), and still catch a gradient that is off by 0.01%.
      max_coords: coordinates checked per leaf: every one for a leaf of at most this size,
        else a sample of this many drawn with `seed` (None: all).
      seed: seeds the projection v and the sampled coordinates (deterministic).

    Returns:
      a `GradcheckReport`: per leaf ("args/0/kernel"), the coordinates checked and the
      largest absolute and relative errors; `print(report)` shows a table.

    Raises:
      GradcheckError (an AssertionError): some checked coordinate is outside the tolerance,
        or the analytic gradient has a non-finite entry; the message names each failing
        leaf and its worst coordinate, and `.report` holds the report.
      ValueError: no floating array among `args`, or bad settings.
      TypeError: fn returns no floating-point output.

    PyTorch's `torch.autograd.gradcheck` uses the same central differences with looser
    defaults (atol 1e-5, rtol 1e-3), checks every coordinate, and raises a
    RuntimeError subclass; JAX's `jax.test_util.check_grads` raises AssertionError, as
    this does, so a failed check reads as a failed test.
    """
    _check_settings(eps, rtol, atol, max_coords)
    with jax.enable_x64(True):
        if not any(is_float_array(leaf) for leaf in jax.tree.leaves(args)):
            raise ValueError("gradcheck: no floating-point array among the arguments to "
                             "differentiate; integer and non-array leaves are held fixed.")
        names = [f"args/{i}" for i in range(len(args))]
        return run_gradcheck(fn, args, names, eps=eps, rtol=rtol, atol=atol,
                             max_coords=max_coords, seed=seed)


def gradcheck_layer(layer, input_shape: Any, key, training: bool = False, *,
                    eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7,
                    max_coords: int | None = 128, seed: int = 0) -> GradcheckReport:
    """`gradcheck` a layer's apply w.r.t. its params and its (floating) input, in float64.

    params, state = layer.init(key, input_shape); the input is random (standard normals;
    see `random_input`: integer inputs such as token ids are in [0, 4), pass an array to
    choose them), and F(params, x) = <apply(params, state, x)[0], v> for a fixed random v.
    Integer inputs are held fixed, so only the params are checked. With `training=True`
    every evaluation gets the same key (fold_in(key, 1)), so dropout masks are frozen and
    the check is of a deterministic function; BatchNorm then differentiates through the
    batch statistics. Leaves are named "params/0/kernel" and "x".

    Returns an empty report (ok) when there is nothing to differentiate. Raises as
    `gradcheck` (GradcheckError, naming the layer).
    """
    _check_settings(eps, rtol, atol, max_coords)
    layer = as_layer("gradcheck_layer", layer)
    params, state = layer.init(key, input_shape)
    x = random_input(input_shape, jnp.float32, numpy_rng(key))
    apply_key = jax.random.fold_in(key, 1) if training else None
    return check_layer_gradients(layer, params, state, x, apply_key, training, eps=eps,
                                 rtol=rtol, atol=atol, max_coords=max_coords, seed=seed)


def check_layer_gradients(layer, params, state, x, key, training: bool, **settings):
    """gradcheck `layer.apply` at given params/state/input (shared with jl.testing)."""
    with jax.enable_x64(True):
        state64 = cast_floats(state, np.float64)

        def fn(p, xx):
            return layer.apply(p, state64, xx, key=key, training=training)[0]

        return run_gradcheck(fn, (params, x), ("params", "x"), label=layer.name, **settings)
