"""Mixed precision: a dtype `Policy` for a whole model, and `DynamicLossScale` for float16.

    policy = jl.Policy(params="float32", compute="bfloat16", output="float32")
    model = jl.mixed_precision(jl.models.lenet5(), policy)
    params, state = model.init(key, (64, 32, 32, 1))    # float32 params, stored as such
    logits, state = model.apply(params, state, x)       # convs and matmuls in bfloat16

float16 needs loss scaling as well (its smallest normal number is 6e-5, so small
gradients flush to zero); `jl.train.make_train_step(..., loss_scale=jl.DynamicLossScale())`
does it inside the train step. bfloat16 has float32's exponent range and needs none.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxlayers._checks import check_positive_int, describe
from jaxlayers.core import Layer, as_layer, layer_factory

__all__ = ["Policy", "mixed_precision", "DynamicLossScale", "all_finite", "select_tree",
           "cast_floats"]

_FLOAT_NAMES = ("bfloat16", "float16", "float32", "float64")


def _float_dtype(field: str, value: Any) -> jnp.dtype:
    """`value` (a name such as "bfloat16", or a dtype) as a floating jnp.dtype."""
    try:  # jnp.dtype(None) is the default float: here None is no dtype
        dtype = None if value is None else jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"Policy: {field} must be a floating dtype, one of "
                         f"{list(_FLOAT_NAMES)}, got {value!r}.")
    return dtype


def _is_float(leaf) -> bool:
    return jnp.issubdtype(getattr(leaf, "dtype", jnp.bool_), jnp.floating)


def cast_floats(tree: Any, dtype) -> Any:
    """Every floating leaf of `tree` cast to `dtype`; integer, bool and key leaves kept.

    Works on arrays and on `jax.ShapeDtypeStruct`s (an input spec), and through
    `jl.Masked` (its bool mask is kept).
    """
    def cast(leaf):
        if not _is_float(leaf):
            return leaf
        if isinstance(leaf, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(leaf.shape, dtype)
        return leaf.astype(dtype)

    return jax.tree.map(cast, tree)


@dataclasses.dataclass(frozen=True, init=False)
class Policy:
    """Which dtype params are stored in, computed in, and returned in (jmp's three dtypes).

    params:  the dtype `init` stores float params in (and so the gradients and the
             optimizer state, which follow the params): float32 for mixed precision.
    compute: the dtype `apply` casts float params and float inputs to before the model
             runs: convolutions, matmuls and activations happen in it. Norms, softmax,
             average pools and losses still take their statistics in at least float32
             (each casts up inside and back down; STYLE.md §5).
    output:  the dtype the model's float outputs are cast to (float32, so that the loss
             and metrics see float32 logits).

    Each is a floating dtype or its name: "bfloat16", "float16", "float32", "float64".
    Policy() is all float32 (no change); Policy(compute="bfloat16") is the usual mixed
    policy. A Policy is a static, hashable value (compare it, close over it).

    Raises:
      ValueError: a field that is not a floating dtype (an unknown name such as "bf16",
        or "int8"), naming the field and the value.
    """

    params: jnp.dtype
    compute: jnp.dtype
    output: jnp.dtype

    def __init__(self, params="float32", compute="float32", output="float32"):
        for field, value in (("params", params), ("compute", compute), ("output", output)):
            object.__setattr__(self, field, _float_dtype(field, value))

    def __repr__(self) -> str:
        return (f"Policy(params={self.params.name!r}, compute={self.compute.name!r}, "
                f"output={self.output.name!r})")

    def cast_to_params(self, tree):
        """Float leaves of `tree` in the params dtype."""
        return cast_floats(tree, self.params)

    def cast_to_compute(self, tree):
        """Float leaves of `tree` in the compute dtype."""
        return cast_floats(tree, self.compute)

    def cast_to_output(self, tree):
        """Float leaves of `tree` in the output dtype."""
        return cast_floats(tree, self.output)


def _like(new, old):
    """`new` with each float leaf in the dtype of `old`'s leaf at the same place (a state
    whose structure changed is returned as it is, for the caller's checks to report)."""
    if jax.tree.structure(new) != jax.tree.structure(old):
        return new
    return jax.tree.map(lambda n, o: n.astype(o.dtype) if _is_float(n) else n, new, old)


@layer_factory
def mixed_precision(layer: Layer, policy: Policy) -> Layer:
    """`layer` run under a dtype `Policy`: params stored in one dtype, computed in another.

    Math: init:  (params, state) = cast_params(layer.init(key, cast_compute(spec)))
          apply: (y, state') = layer.apply(cast_compute(params), state, cast_compute(x))
                 returns (cast_output(y), state' in state's dtypes)
    where cast_d casts every floating leaf to d (integer inputs such as token ids, bool
    masks and PRNG keys pass unchanged). Keyword inputs of apply (initial_state=, mask=,
    cache=) are cast like x. The cast of the params is inside apply, so jax.grad of the
    float32 params gives float32 gradients (the cast's transpose casts the cotangent back
    up), and an optimizer sees float32 params, grads and moments: the master weights.

    Choices:
    - state is not cast: BatchNorm's running mean and variance are statistics, kept in
      the dtype init made them (float32), and a new state comes back in the old state's
      dtypes, so a train loop or `lax.scan` carries the same types every step.
    - every float param is cast to compute, gammas and betas included (as jmp's policies
      and Keras's mixed policies do). Norms still compute mean and variance in float32
      from the compute-dtype input, with the rounded gamma and beta. To keep one layer
      entirely in float32, build it with its own dtype= (Dense(..., dtype="float32")):
      its cast comes after the policy's.
    - params of another float dtype (a layer's param_dtype=bfloat16) are stored in the
      policy's params dtype too: the policy rules the whole model.

    Shapes: as `layer`'s. params and state: `layer`'s (float params in `policy.params`).

    Args:
      layer: any jl.Layer (a whole model: jl.serial, jl.compose, jl.models builders).
      policy: a `jl.Policy`.

    Raises:
      TypeError: layer not a Layer, policy not a Policy.

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> policy = jl.Policy(params="float32", compute="bfloat16", output="float32")
      >>> model = jl.mixed_precision(jl.Dense(3), policy)
      >>> params, state = model.init(jax.random.key(0), (2, 4))
      >>> params["kernel"].dtype  # float32 master weights
      dtype('float32')
      >>> y, _ = model.apply(params, state, jnp.ones((2, 4)))  # the matmul in bfloat16
      >>> y.shape, y.dtype
      ((2, 3), dtype('float32'))
    """
    inner = as_layer("mixed_precision", layer)
    if not isinstance(policy, Policy):
        raise TypeError(f"mixed_precision: policy must be a jl.Policy(params=..., "
                        f"compute=..., output=...), got {describe(policy)}: {policy!r}.")

    def init(key, spec):
        params, state = inner.init(key, policy.cast_to_compute(spec))
        return policy.cast_to_params(params), state

    def apply(params, state, x, *, key=None, training=False, **inputs):
        y, new_state = inner.apply(policy.cast_to_compute(params), state,
                                   policy.cast_to_compute(x), key=key, training=training,
                                   **policy.cast_to_compute(inputs))
        return policy.cast_to_output(y), _like(new_state, state)

    return Layer(init, apply, name="MixedPrecision", children=(inner,),
                 input_dtype=inner.input_dtype, input_spec=inner.input_spec)


# ----------------------------------------------------------------------- loss scaling

def all_finite(tree) -> jax.Array:
    """True (a bool scalar) when every float leaf of `tree` is finite: no inf, no NaN."""
    leaves = [a for a in jax.tree.leaves(tree) if _is_float(a)]
    if not leaves:
        return jnp.array(True)
    return jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]).all()


def select_tree(pred, on_true, on_false):
    """Leafwise `where(pred, on_true, on_false)` for two trees of one structure; pred a bool
    scalar (array, traced under jit: both sides are computed, one is kept)."""
    return jax.tree.map(lambda a, b: lax.select(pred, a, b), on_true, on_false)


def _check_factor(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 1):
        raise ValueError(f"DynamicLossScale: factor must be a finite number > 1, got "
                         f"{value!r}.")
    return float(value)


def _check_scale(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"DynamicLossScale: {name} must be a finite number > 0, got "
                         f"{value!r}.")
    return float(value)


class DynamicLossScale:
    """A loss scale for float16 training that adapts itself (jmp's, Keras's LossScaleOptimizer).

    Math, per train step, with S the scale and c the count of finite steps in a row:
      g = ∇(S · L) / S                       (`scale` the loss, `unscale` the gradients)
      finite(g):   params, opt_state <- the optimizer's update;  c <- c + 1;
                   if c == period: S <- S · factor, c <- 0     (grow)
      otherwise:   params, opt_state unchanged (the step is skipped);
                   S <- max(S / factor, min_loss_scale), c <- 0   (shrink)
    A grown scale that would overflow float32 keeps its old value. Multiplying by S and
    then by 1/S is exact for a power-of-two S and factor, so a finite step gets the same
    gradients as without scaling, except the ones that would have underflowed float16.

    A registered pytree: `loss_scale` (float32 scalar) and `counter` (int32 scalar) are its
    leaves, carried through `jax.jit` and `lax.scan`; `period`, `factor` and
    `min_loss_scale` are static. Defaults are jmp's and Keras's: S = 2**15, period 2000,
    factor 2, min 1.

    Args:
      loss_scale: the initial scale S (> 0). Start high: too high costs a skipped step
        and a halving; too low costs `period` steps per doubling.
      period: finite steps in a row before the scale grows.
      factor: growth and shrink factor (> 1).
      min_loss_scale: the floor the scale shrinks to (> 0).

    Raises:
      ValueError: a loss scale, factor or floor out of range, a period < 1.
    """

    __slots__ = ("loss_scale", "counter", "period", "factor", "min_loss_scale")

    def __init__(self, loss_scale: float = 2.0 ** 15, *, period: int = 2000,
                 factor: float = 2.0, min_loss_scale: float = 1.0):
        _check_scale("loss_scale", loss_scale)
        object.__setattr__(self, "loss_scale", jnp.asarray(loss_scale, jnp.float32))
        object.__setattr__(self, "counter", jnp.zeros((), jnp.int32))
        object.__setattr__(self, "period", check_positive_int("DynamicLossScale", "period",
                                                              period))
        object.__setattr__(self, "factor", _check_factor(factor))
        object.__setattr__(self, "min_loss_scale", _check_scale("min_loss_scale",
                                                                min_loss_scale))

    @classmethod
    def _make(cls, loss_scale, counter, period, factor, min_loss_scale):
        # unflattening bypasses __init__: its leaves may be tracers or placeholders
        new = object.__new__(cls)
        for name, value in zip(cls.__slots__, (loss_scale, counter, period, factor,
                                               min_loss_scale)):
            object.__setattr__(new, name, value)
        return new

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"DynamicLossScale is immutable; "
                                              f"cannot set {name!r}.")

    @property
    def config(self) -> tuple:
        """(period, factor, min_loss_scale): the static part."""
        return (self.period, self.factor, self.min_loss_scale)

    def __repr__(self) -> str:
        return (f"DynamicLossScale(loss_scale={self.loss_scale!r}, counter={self.counter!r}, "
                f"period={self.period}, factor={self.factor}, "
                f"min_loss_scale={self.min_loss_scale})")

    def scale(self, tree):
        """tree · S, each float leaf in at least float32 (a float16 loss times 2**16 would
        overflow to inf before any gradient is taken)."""
        def up(a):
            return a.astype(jnp.promote_types(a.dtype, jnp.float32)) * self.loss_scale
        return jax.tree.map(up, tree)

    def unscale(self, tree):
        """tree · (1 / S), each float leaf kept in its own dtype (float32 gradients stay
        float32)."""
        inverse = 1.0 / self.loss_scale
        return jax.tree.map(lambda a: (a * inverse).astype(a.dtype), tree)

    def adjust(self, grads_finite) -> "DynamicLossScale":
        """The next scale: grow after `period` finite steps in a row, shrink on a
        non-finite one (`grads_finite`, a bool scalar, e.g. `all_finite(grads)`)."""
        grads_finite = jnp.asarray(grads_finite)
        if grads_finite.shape != () or grads_finite.dtype != jnp.bool_:
            raise ValueError(f"DynamicLossScale.adjust: grads_finite must be a bool scalar, "
                             f"got {grads_finite.dtype}{list(grads_finite.shape)}.")
        grow = self.counter == self.period - 1
        grown = self.loss_scale * self.factor
        grown = jnp.where(jnp.isfinite(grown), grown, self.loss_scale)
        shrunk = jnp.maximum(self.loss_scale / self.factor,
                             jnp.asarray(self.min_loss_scale, jnp.float32))
        loss_scale = jnp.where(grads_finite, jnp.where(grow, grown, self.loss_scale), shrunk)
        counter = jnp.where(grads_finite & ~grow, self.counter + 1, 0).astype(jnp.int32)
        return self._make(loss_scale, counter, *self.config)


# keyed leaves: checkpoints and jl.path_strings name them ".../loss_scale", ".../counter"
jax.tree_util.register_pytree_with_keys(
    DynamicLossScale,
    lambda s: (((jax.tree_util.GetAttrKey("loss_scale"), s.loss_scale),
                (jax.tree_util.GetAttrKey("counter"), s.counter)), s.config),
    lambda config, leaves: DynamicLossScale._make(*leaves, *config),
    lambda s: ((s.loss_scale, s.counter), s.config))
