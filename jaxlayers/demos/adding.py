"""The adding problem (Hochreiter & Schmidhuber 1997) with an LSTM: a long-range memory test.

Each example is a sequence of T = 100 steps with 2 features: a random value in [0, 1] and a
marker that is 1 at exactly two steps and 0 elsewhere. The target is the sum of the two
marked values. Predicting the mean (1.0) gives MSE = Var(u1 + u2) = 1/6 ≈ 0.167; a model
must carry the first marked value across up to 99 steps to beat it.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxlayers as jl
from jaxlayers.demos import missing_extra

BASELINE_MSE = 1.0 / 6.0  # Var(u1 + u2) for u1, u2 ~ U[0, 1] independent


def make_batch(key, n: int, length: int = 100):
    """x (n, length, 2) float32, y (n, 1): values, a marker with exactly two 1s, their sum.

    The two marked steps are distinct and uniform over the sequence (any pair).
    """
    k_val, k_pos = jax.random.split(key)
    values = jax.random.uniform(k_val, (n, length))
    # the two smallest of `length` uniform draws sit at two distinct, uniform positions
    order = jnp.argsort(jax.random.uniform(k_pos, (n, length)), axis=1)
    steps = jnp.arange(length)[None, :]
    marker = ((steps == order[:, :1]) | (steps == order[:, 1:2])).astype(jnp.float32)
    x = jnp.stack([values, marker], axis=-1)
    y = jnp.sum(values * marker, axis=1, keepdims=True)
    return x, y


def model(units: int = 32) -> jl.Layer:
    """LSTM(units) reading the whole sequence -> Dense(1) on its last h."""
    return jl.serial(jl.LSTM(units), jl.Dense(1))


def _trainer(net, state, optimizer, batch_size: int, length: int, steps_per_call: int):
    """A jitted function running `steps_per_call` Adam steps on fresh batches (lax.scan)."""

    def loss_fn(params, x, y):
        pred, _ = net.apply(params, state, x)  # state: empty dicts (no BatchNorm here)
        return jnp.mean((pred - y) ** 2)

    def one(carry, key):
        params, opt_state = carry
        x, y = make_batch(key, batch_size, length)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    @jax.jit
    def train(params, opt_state, key, first_step):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(
            first_step + jnp.arange(steps_per_call))
        (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), keys)
        return params, opt_state, losses

    @jax.jit
    def evaluate(params, x, y):
        return loss_fn(params, x, y)

    return train, evaluate


def plot(losses, test_mse: float, path: str, steps_per_point: int) -> str:
    """Training MSE per step (and its running mean) with the mean-predicting baseline."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise missing_extra(exc) from exc
    losses = np.asarray(losses)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.6, alpha=0.4, color="C0", label="training MSE (batch)")
    k = max(1, steps_per_point)
    if len(losses) >= k:
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="C0", label=f"running mean ({k} steps)")
    ax.axhline(BASELINE_MSE, color="C3", ls="--", label=f"predict the mean: {BASELINE_MSE:.3f}")
    ax.axhline(test_mse, color="C2", ls=":", label=f"test MSE: {test_mse:.4f}")
    ax.set(yscale="log", xlabel="step", ylabel="MSE",
           title="Adding problem, T = 100: LSTM -> Dense(1)")
    ax.legend()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def run(*, steps: int = 1500, out: str = "outputs", seed: int = 0, length: int = 100,
        units: int = 32, batch_size: int = 64, learning_rate: float = 1e-2,
        clip_norm: float = 1.0, test_size: int = 2000, steps_per_call: int = 50,
        progress: bool = True, verbose: bool = True) -> dict:
    """Train LSTM(units) -> Dense(1) on fresh batches, print test MSE vs the baseline, save
    `out/adding.png`.

    Every step draws a new batch (an endless training set, so there is nothing to overfit);
    `steps_per_call` steps run inside one jitted `lax.scan`, so Python dispatches rarely
    (`steps` is rounded up to a multiple of it).
    Optimizer: optax.chain(clip_by_global_norm(clip_norm), adam(learning_rate)), the seeds'
    gradient clipping. The test set is a fixed batch of `test_size` sequences from a key
    that training never uses. The mean-predicting baseline's test MSE is printed too
    (≈ 1/6 in expectation).

    Returns {"test_mse", "baseline_mse", "losses", "steps" (as run), "path", "seconds"}.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"adding: steps must be an int >= 1, got {steps!r}.")
    start = time.perf_counter()
    key_init, key_train, key_test = jax.random.split(jax.random.key(seed), 3)
    net = model(units)
    params, state = jax.jit(net.init, static_argnums=1)(key_init, (batch_size, length, 2))
    optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))
    opt_state = optimizer.init(params)
    train, evaluate = _trainer(net, state, optimizer, batch_size, length, steps_per_call)
    x_test, y_test = make_batch(key_test, test_size, length)
    baseline = float(jnp.mean((y_test - jnp.mean(y_test)) ** 2))

    steps = -(-steps // steps_per_call) * steps_per_call  # whole jitted calls
    bar = _bar(progress and verbose, steps, "adding")
    losses, done = [], 0
    while done < steps:
        params, opt_state, chunk = train(params, opt_state, key_train, done)
        chunk = np.asarray(chunk)
        losses.extend(chunk.tolist())
        done += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
            bar.set_postfix_str(f"mse {chunk.mean():.4f}", refresh=False)
        elif verbose and done % (10 * steps_per_call) < steps_per_call:
            print(f"step {done}/{steps} - training MSE {chunk.mean():.4f}", flush=True)
    if bar is not None:
        bar.close()
    test_mse = float(evaluate(params, x_test, y_test))
    path = plot(losses, test_mse, os.path.join(out, "adding.png"), steps_per_call)
    seconds = time.perf_counter() - start
    if verbose:
        print(f"adding (T = {length}): test MSE {test_mse:.4f}, predict-the-mean baseline "
              f"{baseline:.4f}, {steps} steps of {batch_size}, {seconds:.1f} s")
        print(f"saved {path}")
    return {"test_mse": test_mse, "baseline_mse": baseline, "losses": losses,
            "steps": steps, "path": path, "seconds": seconds}


def _bar(enabled: bool, total: int, desc: str):
    """A tqdm bar when asked for and installed, else None."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, smoothing=0)
