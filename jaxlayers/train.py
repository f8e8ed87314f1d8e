"""Training steps: the jit-compiled train and eval steps, and `TrainState`.

    step = jl.train.make_train_step(model, loss, optax.adam(1e-3))
    params, state, opt_state, value = step(params, state, opt_state, x, y, key)

`jl.fit` (jaxlayers/_fit.py) runs these steps over data; `jl.metrics` holds the metrics and
`jl.callbacks` the callbacks.

Optimizers are optax `GradientTransformation`s, used as they are:

  optax.sgd(lr)                  w <- w - lr * g
  optax.sgd(lr, momentum=0.9)    t <- g + 0.9 t,  w <- w - lr * t.  With a constant lr this is
                                 seed 004's v <- γv + η∇L, w <- w - v (v = lr * t); the two
                                 differ only under a learning-rate schedule.
  optax.rmsprop(lr)              s <- 0.9 s + 0.1 g²,  w <- w - lr * g / sqrt(s + 1e-8)
                                 (ε inside the root by default; seed 004 prints the formula
                                 without the factor g, a typo).
  optax.adam(lr)                 seed 003 Q2: β1 0.9, β2 0.999, ε 1e-8, bias-corrected,
                                 w <- w - lr * m̂ / (sqrt(v̂) + ε). Seed 004's ε inside the
                                 root is optax.adam(lr, eps=0.0, eps_root=1e-8).
  clipping                       optax.chain(optax.clip_by_global_norm(max_norm),
                                             optax.adam(lr)):
                                 g <- g * max_norm / ||g|| when ||g|| > max_norm (seed 004), the
                                 norm taken over all leaves together; optax.clip(c) clips each
                                 entry to [-c, c] instead.
  L1 / L2 penalties              penalty=jl.regularizers.l2(1e-4) (or l1, l1_l2) adds λ·Σw²
                                 over the kernels to the loss, as Keras's kernel_regularizer.
                                 It is not optax.adamw's decoupled weight decay, which skips
                                 the gradient and Adam's scaling.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxlayers import metrics as metrics_lib
from jaxlayers.core import Layer, as_layer
from jaxlayers.precision import DynamicLossScale, all_finite, select_tree

__all__ = ["TrainState", "make_train_step", "make_eval_step"]


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a training run carries from one step to the next, as one pytree.

    params, state: the model's (`model.init`); opt_state: the optimizer's
    (`optimizer.init(params)`, holding Adam's moments and the schedule's step count);
    key: the run's PRNG key (shuffling and dropout derive from it and from `step` and
    `epoch`, never from a counter outside); step: optimizer steps taken; epoch: epochs
    completed. `jl.fit` takes one and returns the next, so two calls of 5 epochs equal one
    of 10, bit for bit; `jl.save` / `jl.restore` write and read it whole.

    A registered pytree (every field a child), so it passes through `jax.jit`,
    `jax.tree.map` and checkpoints; `replace(**changes)` returns a modified copy.
    """

    params: Any
    state: Any
    opt_state: Any
    key: Any
    step: Any = 0
    epoch: Any = 0

    @classmethod
    def create(cls, params, state, optimizer, key) -> "TrainState":
        """A run's first TrainState: `optimizer.init(params)`, step 0, epoch 0.

        key: a typed PRNG key (jax.random.key(seed)); a legacy uint32 PRNGKey is wrapped.
        """
        check_optimizer("TrainState.create", optimizer)
        return cls(params, state, optimizer.init(params), typed_key("TrainState.create", key),
                   0, 0)

    def replace(self, **changes) -> "TrainState":
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    TrainState, data_fields=["params", "state", "opt_state", "key", "step", "epoch"],
    meta_fields=[])


def typed_key(where: str, key):
    """`key` as a typed PRNG key array; a TypeError naming `where` for anything else."""
    if key is None or not hasattr(key, "dtype"):
        raise TypeError(f"{where}: key must be a PRNG key such as jax.random.key(0), got {key!r}.")
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)  # a legacy uint32 jax.random.PRNGKey


# --------------------------------------------------------------------------- steps

def check_model(where: str, model) -> Layer:
    return as_layer(where, model)


def check_callable(where: str, name: str, fn, hint: str) -> None:
    if not callable(fn):
        raise TypeError(f"{where}: {name} must be a callable {hint}, got {fn!r}.")


def check_optimizer(where: str, optimizer) -> None:
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"{where}: optimizer must be an optax GradientTransformation "
                        f"(e.g. optax.adam(1e-3)), got {optimizer!r}.")


def _scalar(where: str, value):
    if jnp.ndim(value) != 0:
        raise ValueError(f"{where}: the loss must return a scalar (reduction='mean' or 'sum'), "
                         f"got shape {jnp.shape(value)}.")
    return value


def step_fn(model, loss_fn, optimizer, penalty, metric_fns=None, where="make_train_step", *,
            loss_scale=None):
    """The un-jitted train step; given `metric_fns` (a dict, maybe empty) it also returns
    {name: metric(predictions, y)} of the batch, from the training-mode predictions.
    With `loss_scale` (a `jl.DynamicLossScale`) opt_state is (optimizer state, scale) and the
    step scales the loss, unscales the gradients and skips a non-finite step
    (`make_train_step`)."""
    with_metrics = metric_fns is not None

    def objective(params, state, x, y, key, scale):
        predictions, new_state = model.apply(params, state, x, key=key, training=True)
        value = _scalar(where, loss_fn(predictions, y))
        if penalty is not None:
            value = value + penalty(params)
        aux = (new_state, predictions) if with_metrics else new_state
        if scale is None:
            return value, aux
        return scale.scale(value), (value, aux)

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(params, state, opt_state, x, y, key):
        scale = None
        if loss_scale is not None:
            opt_state, scale = _scaled_opt_state(where, opt_state, loss_scale)
        (value, aux), grads = grad_fn(params, state, x, y, key, scale)
        if scale is not None:
            value, aux = aux  # the unscaled loss, as reported without scaling
            grads = scale.unscale(grads)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        new_state, predictions = aux if with_metrics else (aux, None)
        if scale is not None:
            # a non-finite gradient skips the whole step: params, layer state (BatchNorm
            # statistics of an overflowed forward pass) and optimizer state stay as they were
            finite = all_finite(grads)
            new_params, new_state, new_opt_state = select_tree(
                finite, (new_params, new_state, new_opt_state), (params, state, opt_state))
            new_opt_state = (new_opt_state, scale.adjust(finite))
        if not with_metrics:
            return new_params, new_state, new_opt_state, value
        values = {name: fn(predictions, y) for name, fn in metric_fns.items()}
        return new_params, new_state, new_opt_state, value, values

    return step


def _scaled_opt_state(where: str, opt_state, loss_scale):
    """(optimizer state, DynamicLossScale) from the carried opt_state, else a TypeError."""
    if not (isinstance(opt_state, tuple) and len(opt_state) == 2
            and isinstance(opt_state[1], DynamicLossScale)):
        raise TypeError(f"{where}: with loss_scale=, opt_state must be the pair "
                        f"(optimizer_state, jl.DynamicLossScale), got {type(opt_state).__name__}; "
                        f"start from (optimizer.init(params), loss_scale).")
    if opt_state[1].config != loss_scale.config:
        raise ValueError(f"{where}: the carried loss scale has (period, factor, "
                         f"min_loss_scale) {opt_state[1].config}, but loss_scale= has "
                         f"{loss_scale.config}.")
    return opt_state


def make_train_step(model, loss_fn: Callable, optimizer, *, penalty: Callable | None = None,
                    jit: bool = True, donate: bool = False,
                    loss_scale: DynamicLossScale | None = None) -> Callable:
    """One optimizer step, jit-compiled and pure:

        step(params, state, opt_state, x, y, key) -> (params, state, opt_state, loss)

    Math: (L, state') = loss_fn(model(params, state, x, key, training=True), y) + penalty(params),
          g = ∇_params L,  (u, opt_state') = optimizer.update(g, opt_state, params),
          params' = params + u.
    `loss` is the objective minimised (data loss plus penalty, as Keras reports it), before
    the update. The new layer state (BatchNorm running statistics) comes out of the forward
    pass through `value_and_grad(..., has_aux=True)`; nothing else is computed, so the step is
    what one writes by hand (benchmarks/ compares them).

    Loss scaling (float16 compute, `jl.mixed_precision(model, jl.Policy(compute="float16"))`):
    with `loss_scale=jl.DynamicLossScale(...)` the scale is carried state of the step, and
    it rides in the opt_state slot, so the step's signature, a `jl.TrainState`, a
    checkpoint and a `lax.scan` over steps carry it unchanged:

        opt_state = (optimizer.init(params), jl.DynamicLossScale())
        params, state, opt_state, loss = step(params, state, opt_state, x, y, key)
        opt_state[1].loss_scale        # the current scale S

    Math: g = unscale(∇_params scale(L)) = ∇(S·L) / S; if every g is finite, the update
    above; otherwise params, state and the optimizer state are returned unchanged (the
    step is skipped). The scale then adjusts (`DynamicLossScale.adjust`: grow after
    `period` finite steps, shrink on an overflow). `loss` is the unscaled L. The update is
    computed in either case and one side selected, as jmp does (no `lax.cond`: the two
    branches compile to one program).

    Args:
      model: a jl.Layer.
      loss_fn: loss(predictions, targets) -> scalar, e.g. jl.losses.mse or
        functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True).
      optimizer: an optax GradientTransformation (see the module docstring);
        opt_state = optimizer.init(params).
      penalty: optional penalty(params) -> scalar added to the loss (jl.regularizers.l2(λ)).
      jit: compile with jax.jit (False returns the plain function, to nest in your own
        jit, scan or pmap).
      donate: donate params, state and opt_state to the step, so XLA updates them in place:
        5-8% faster on the median step of the 784-256-128-10 MLP on XLA:CPU (2 cores;
        benchmarks/README.md), more for tiny models, neutral for large ones. Off by
        default: a donated array is deleted, and the caller's params must survive a step
        they did not ask to give up. With donate=True use the returned arrays only.
      loss_scale: a `jl.DynamicLossScale`, the initial scale: turns on loss scaling, with
        opt_state = (optimizer.init(params), loss_scale) (see above). The carried scale
        must have this one's period, factor and min_loss_scale. None: no scaling.

    Raises:
      TypeError: model, loss_fn, optimizer, penalty or loss_scale of the wrong kind;
        (trace time) with loss_scale, an opt_state that is not (optimizer state, scale).
      ValueError: (trace time) loss_fn returns a non-scalar; a carried scale whose
        period, factor or min_loss_scale differ from loss_scale's.
    """
    check_model("make_train_step", model)
    check_callable("make_train_step", "loss_fn", loss_fn, "loss(predictions, targets)")
    check_optimizer("make_train_step", optimizer)
    if penalty is not None:
        check_callable("make_train_step", "penalty", penalty, "penalty(params) -> scalar")
    if loss_scale is not None and not isinstance(loss_scale, DynamicLossScale):
        raise TypeError(f"make_train_step: loss_scale must be a jl.DynamicLossScale or None, "
                        f"got {loss_scale!r}.")
    step = step_fn(model, loss_fn, optimizer, penalty, loss_scale=loss_scale)
    if not jit:
        return step
    return jax.jit(step, donate_argnums=(0, 1, 2) if donate else ())


def eval_fn(model, loss_fn, penalty, metric_fns, want_loss, where="make_eval_step"):
    def eval_step(params, state, x, y):
        predictions, _ = model.apply(params, state, x, key=None, training=False)
        values = {}
        if want_loss:
            values["loss"] = _scalar(where, loss_fn(predictions, y))
            if penalty is not None:
                values["loss"] = values["loss"] + penalty(params)
        values.update({name: fn(predictions, y) for name, fn in metric_fns.items()})
        return values

    return eval_step


def make_eval_step(model, loss_fn: Callable, metrics=None, *,
                   penalty: Callable | None = None, jit: bool = True) -> Callable:
    """Metrics of one batch in inference mode: eval_step(params, state, x, y) -> {name: scalar}.

    The forward pass runs with training=False (dropout off, BatchNorm on running
    statistics). "loss" is loss_fn(predictions, y) (+ penalty(params) if given, as for
    training); the others are `metrics` entries (`jl.metrics` names or callables
    metric(predictions, targets) -> scalar, keyed by their __name__); None means
    `jl.metrics.for_loss(loss_fn)` (no accuracy for a regression loss). Each value is the
    batch mean, so a data set's mean is the batch-size-weighted mean of the batches'.

    Raises:
      ValueError: an unknown metric name. TypeError: model or loss_fn of the wrong kind.
    """
    check_model("make_eval_step", model)
    check_callable("make_eval_step", "loss_fn", loss_fn, "loss(predictions, targets)")
    if metrics is None:
        metrics = metrics_lib.for_loss(loss_fn)
    metrics = (metrics,) if isinstance(metrics, str) or callable(metrics) else tuple(metrics)
    eval_step = eval_fn(model, loss_fn, penalty, metrics_lib.resolve("make_eval_step", metrics),
                         "loss" in metrics)
    return jax.jit(eval_step) if jit else eval_step
