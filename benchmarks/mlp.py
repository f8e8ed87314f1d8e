"""MLP workload: 784 -> 256 (relu) -> 128 (relu) -> 10, batch 128, Adam(1e-3), softmax CE.

Contenders:
  jaxlayers        jl.serial of jl.Dense + jl.train.make_train_step (the library's step)
  jax              the same model hand-written in jax.numpy: the fastest variant measured
                   (see VARIANTS and benchmarks/README.md; `run.py --variants` re-measures)
  pytorch          nn.Sequential(Linear, ReLU, ...), torch.optim.Adam, F.cross_entropy
  pytorch-fused    the same with Adam(fused=True)
  torch.compile    the whole pytorch step under torch.compile (slow to compile; not --quick)
With `--variants`: every hand-written formulation in VARIANTS, and jaxlayers:no-donate.
"""

from __future__ import annotations

import functools

import numpy as np

from benchmarks.common import Contender, Workload, jax_stepper, num_threads, torch_stepper

BATCH = 128
SIZES = (784, 256, 128, 10)
LEARNING_RATE = 1e-3


def _data():
    """The one batch every step of every contender trains on (float32 x, int32 labels)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], BATCH).astype(np.int32)
    return x, y


# --------------------------------------------------------------------------- jaxlayers

def _library_step(model, optimizer, donate=True):
    """The library's train step, as a user builds it (shared with the other workloads).

    `jl.train.make_train_step(model, loss, optimizer)` with the integer-label softmax
    cross-entropy on logits; it donates params, state and opt_state by default.
    Returns (step, True): `step(params, state, opt_state, x, y, key)`; the flag says that
    the library's own step is measured (kept for the callers that unpack it).
    """
    import jaxlayers as jl

    loss = functools.partial(jl.losses.sparse_categorical_crossentropy, from_logits=True)
    return jl.train.make_train_step(model, loss, optimizer, donate=donate), True


def setup_jaxlayers(donate=True):
    """The library as a user writes it: jl.serial of jl.Dense, jl.train.make_train_step."""
    import jax
    import jax.numpy as jnp
    import optax

    import jaxlayers as jl

    model = jl.serial(jl.Dense(256, activation="relu"), jl.Dense(128, activation="relu"),
                      jl.Dense(10))
    optimizer = optax.adam(LEARNING_RATE)
    step, _ = _library_step(model, optimizer, donate)
    params, state = model.init(jax.random.key(0), (BATCH, SIZES[0]))
    x, y = (jnp.asarray(a) for a in _data())
    return jax_stepper(step, (params, state, optimizer.init(params)), (x, y, jax.random.key(1)))


# ------------------------------------------------------------------ hand-written JAX

def _glorot(key, fan_in, fan_out):
    import jax
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, (fan_in, fan_out), minval=-limit, maxval=limit)


def _handwritten(structure="list", loss="optax", bias="plus", donate=False, adam="optax"):
    """Build a hand-written JAX train step; the keywords pick one formulation each.

    structure: "list" (params [(W, b), ...]) or "dict" ({"l0": {"kernel", "bias"}, ...}).
    loss: "optax" (optax.softmax_cross_entropy_with_integer_labels), "logsumexp"
      (logsumexp(z) - z[y], fused), "onehot" (-sum(one_hot(y) * log_softmax(z))).
    bias: "plus" (x @ W + b), "broadcast" (+ broadcast_to(b, y.shape), as jl.Dense),
      "dot_general" (lax.dot_general + b[None, :]).
    donate: donate params and optimizer state to the jitted step (donate_argnums).
    adam: "optax" (optax.adam) or "hand" (Adam written out with tree maps).
    """
    def setup():
        import jax
        import jax.numpy as jnp
        import optax
        from jax import lax

        key = jax.random.key(0)
        layers = [(_glorot(jax.random.fold_in(key, i), a, b), jnp.zeros((b,), jnp.float32))
                  for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:]))]
        if structure == "dict":
            params = {f"l{i}": {"kernel": w, "bias": b} for i, (w, b) in enumerate(layers)}

            def unpack(p):
                return [(p[f"l{i}"]["kernel"], p[f"l{i}"]["bias"]) for i in range(len(p))]
        else:
            params = layers

            def unpack(p):
                return p

        def affine(h, w, b):
            if bias == "broadcast":
                z = h @ w
                return z + jnp.broadcast_to(b, z.shape)
            if bias == "dot_general":
                return lax.dot_general(h, w, (((1,), (0,)), ((), ()))) + b[None, :]
            return h @ w + b

        def forward(p, h):
            layers_ = unpack(p)
            for i, (w, b) in enumerate(layers_):
                h = affine(h, w, b)
                if i < len(layers_) - 1:
                    h = jax.nn.relu(h)
            return h

        def cross_entropy(z, y):
            if loss == "logsumexp":
                picked = jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0]
                return jnp.mean(jax.nn.logsumexp(z, axis=-1) - picked)
            if loss == "onehot":
                return -jnp.mean(jnp.sum(jax.nn.one_hot(y, z.shape[-1]) *
                                         jax.nn.log_softmax(z), axis=-1))
            return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()

        def objective(p, x, y):
            return cross_entropy(forward(p, x), y)

        if adam == "hand":
            b1, b2, eps = 0.9, 0.999, 1e-8
            opt_state = (jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params),
                         jax.tree.map(jnp.zeros_like, params))

            def update(p, grads, o):
                t, mu, nu = o
                t = t + 1
                mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, mu, grads)
                nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, nu, grads)
                tf = t.astype(jnp.float32)
                c1, c2 = 1 - b1 ** tf, 1 - b2 ** tf
                p = jax.tree.map(lambda w, m, v: w - LEARNING_RATE * (m / c1) /
                                 (jnp.sqrt(v / c2) + eps), p, mu, nu)
                return p, (t, mu, nu)
        else:
            optimizer = optax.adam(LEARNING_RATE)
            opt_state = optimizer.init(params)

            def update(p, grads, o):
                updates, o = optimizer.update(grads, o, p)
                return optax.apply_updates(p, updates), o

        def step(p, o, x, y):
            value, grads = jax.value_and_grad(objective)(p, x, y)
            p, o = update(p, grads, o)
            return p, o, value

        fn = jax.jit(step, donate_argnums=(0, 1) if donate else ())
        x, y = (jnp.asarray(a) for a in _data())
        return jax_stepper(fn, (params, opt_state), (x, y))

    return setup


# Hand-written formulations tried for the baseline (README "Baseline variants").
VARIANTS = {
    "jax:list": dict(),
    "jax:list+donate": dict(donate=True),
    "jax:dict": dict(structure="dict"),
    "jax:dict+donate": dict(structure="dict", donate=True),
    "jax:logsumexp-loss": dict(loss="logsumexp"),
    "jax:onehot-loss": dict(loss="onehot"),
    "jax:broadcast-bias": dict(bias="broadcast"),
    "jax:dot_general": dict(bias="dot_general"),
    "jax:hand-adam": dict(adam="hand"),
    "jax:hand-adam+donate": dict(adam="hand", donate=True),
}
# The fastest measured (README): the plain form with donated params and optimizer state.
BASELINE_VARIANT = "jax:list+donate"


# ------------------------------------------------------------------------- PyTorch

def _torch(adam_kwargs=None, compiled=False):
    def setup():
        import torch
        import torch.nn.functional as F
        from torch import nn

        torch.set_num_threads(num_threads())
        torch.manual_seed(0)
        layers = []
        for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(SIZES) - 2:
                layers.append(nn.ReLU())
        model = nn.Sequential(*layers)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE,
                                     **(adam_kwargs or {}))
        x, y = (torch.from_numpy(a) for a in _data())
        y = y.long()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            return loss

        return torch_stepper(step, compiled)

    return setup


def _contenders():
    yield Contender("jaxlayers", setup_jaxlayers, "jaxlayers",
                    "jl.serial(jl.Dense...) + jl.train.make_train_step (donates by default)")
    yield Contender("jax", _handwritten(**VARIANTS[BASELINE_VARIANT]), "jax",
                    f"hand-written, fastest variant ({BASELINE_VARIANT})")
    yield Contender("jaxlayers:no-donate", lambda: setup_jaxlayers(donate=False), "jaxlayers",
                    "make_train_step(..., donate=False)", variant=True)
    for name, kwargs in VARIANTS.items():
        yield Contender(name, _handwritten(**kwargs), "jax", "baseline variant",
                        variant=True)
    yield Contender("pytorch", _torch(), "torch", "eager, torch.optim.Adam defaults")
    yield Contender("pytorch-fused", _torch({"fused": True}), "torch",
                    "eager, Adam(fused=True)")
    yield Contender("torch.compile", _torch(compiled=True), "torch",
                    "torch.compile of the whole step (inductor, C++)", slow=True)


WORKLOAD = Workload(
    name="mlp",
    title=f"MLP {'-'.join(map(str, SIZES))} (relu), batch {BATCH}, Adam({LEARNING_RATE:g}), "
          f"softmax cross-entropy (integer labels)",
    contenders=tuple(_contenders()),
    baseline="jax",
    reference="pytorch",
)
