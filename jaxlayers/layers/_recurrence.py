"""Running a cell over time: `lax.scan`, differentiated by autodiff or by a custom rule.

Two derivatives of the same function (tested equal):

"autodiff"  JAX differentiates the `lax.scan`. Its reverse pass accumulates the weight
            gradients step by step: every backward step multiplies h_{t-1}^T @ dz_t and
            x_t^T @ dz_t and adds them to running sums.
"custom"    a `jax.custom_jvp` whose tangent rule splits the step's linearization in two
            (cuDNN's structure, written as a forward-mode rule):
              a_t   = d(x_t W + b) + h_{t-1} dU     no recurrence: computed for all steps
                                                    at once, before the tangent scan
              dz_t  = a_t + dh_{t-1} U              the recurrence: a scan carrying only
                                                    the state tangents (dh, dc)
            The primal scan stores the gate-derivative coefficients each step needs
            (`_Kind.step`'s residuals). Reverse mode is JAX's transpose of this rule: a
            backward scan that only propagates (dh, dc) and emits a_t's cotangent, then the
            weight gradients as single matmuls over all T*N rows (h^T @ da, x^T @ da).
            Because it is a JVP rule, forward mode (`jax.jvp`, `jax.linearize`) and
            forward-over-reverse second derivatives keep working (a `custom_vjp` would lose
            them).

Padding (mask) and recurrent dropout are handled identically by both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

DERIVATIVES = ("autodiff", "custom")


def _keep(mask, like):
    """Bool mask (T, N) -> (T, N, H) like `like` (N, H)."""
    return jnp.broadcast_to(mask[:, :, None], mask.shape + like.shape[-1:])


def _select(keep, new, old):
    return new if keep is None else jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)


def scan_autodiff(kind, p, xs, ms, carry, implementation, rmask, go_backwards, unroll,
                  return_sequences):
    """xs (T, N, D'), ms (T, N) bool or None -> (outputs (T, N, H) or None, carry)."""
    def step(carry, inputs):
        x_t, m_t = inputs
        new, h = kind.core(p, carry, x_t, implementation, rmask)
        if m_t is not None:  # a padded step keeps the state and outputs zeros
            keep = jnp.broadcast_to(m_t[:, None], h.shape)
            new = _select(keep, new, carry)
            h = jnp.where(keep, h, jnp.zeros_like(h))
        return new, (h if return_sequences else None)

    carry, ys = lax.scan(step, carry, (xs, ms), reverse=go_backwards, unroll=unroll or 1)
    return ys, carry


def _entering(hs, h0, reverse):
    """The h entering each step: h_{t-1} (h_{t+1} when the scan runs in reverse)."""
    if reverse:
        return jnp.concatenate([hs[1:], h0[None]], axis=0)
    return jnp.concatenate([h0[None], hs[:-1]], axis=0)


def _zeros_like_tangent(t, like):
    return jnp.zeros_like(like) if isinstance(t, SymbolicZero) else t


def scan_custom(kind, p, xs, ms, carry, implementation, rmask, go_backwards, unroll,
                return_sequences):
    """As `scan_autodiff`, differentiated by the custom JVP rule described above.

    unroll=None: the primal scan is not unrolled; the tangent scan is unrolled completely
    (no loop left) when T <= `kind.tangent_full_unroll`, else `kind.tangent_unroll` steps.
    """
    if unroll is None:
        t = xs.shape[0]
        tangent_unroll = max(t, 1) if t <= kind.tangent_full_unroll else kind.tangent_unroll
    else:
        tangent_unroll = unroll
    unroll = unroll or 1
    keep = None if ms is None else _keep(ms, carry[0] if kind.has_c else carry)

    def forward(p, xs, keep, carry, rmask, with_residuals):
        def step(carry, inputs):
            x_t, k_t = inputs
            new, _, res = kind.step(p, carry, x_t, implementation, rmask)
            new = _select(k_t, new, carry)
            return new, ((new[0] if kind.has_c else new), res if with_residuals else None)

        carry, (hs, res) = lax.scan(step, carry, (xs, keep), reverse=go_backwards,
                                    unroll=unroll)
        return hs, carry, res

    @jax.custom_jvp
    def run(p, xs, keep, carry, rmask):
        hs, carry, _ = forward(p, xs, keep, carry, rmask, False)
        return (hs if return_sequences else None), carry

    def run_jvp(primals, tangents):
        p, xs, keep, carry0, rmask = primals
        dp, dxs, _, dcarry0, _ = tangents  # keep and the dropout mask are constants
        hs, carry, (res_scan, res_w) = forward(p, xs, keep, carry0, rmask, True)
        h_prev = _entering(hs, carry0[0] if kind.has_c else carry0, go_backwards)
        if rmask is not None:
            h_prev = h_prev * jnp.broadcast_to(rmask, h_prev.shape)
        a = kind.weight_tangent(p, dp, xs, dxs, h_prev, res_w, implementation)
        dcarry0 = jax.tree.map(_zeros_like_tangent, dcarry0, carry0,
                               is_leaf=lambda t: isinstance(t, SymbolicZero))

        def tangent_step(dcarry, inputs):
            a_t, res_t, k_t = inputs
            new = _select(k_t, kind.tangent(p, res_t, a_t, dcarry, rmask), dcarry)
            return new, (new[0] if kind.has_c else new)

        dcarry, dhs = lax.scan(tangent_step, dcarry0, (a, res_scan, keep),
                               reverse=go_backwards, unroll=tangent_unroll)
        if not return_sequences:
            hs = dhs = None
        return (hs, carry), (dhs, dcarry)

    run.defjvp(run_jvp, symbolic_zeros=True)
    hs, carry = run(p, xs, keep, carry, rmask)
    if hs is not None and keep is not None:  # padded steps output zeros
        hs = jnp.where(keep, hs, jnp.zeros_like(hs))
    return hs, carry


def run_cell(kind, p, x, mask, carry, implementation, derivative, rmask, go_backwards,
             unroll, return_sequences):
    """Run the cell over x (N, T, D) -> (outputs (N, T, H) or None, final carry).

    A padded step (mask False) keeps the state and outputs zeros."""
    xs = jnp.swapaxes(x, 0, 1)  # (T, N, D): scan runs over the leading axis
    if implementation == "hoisted":
        t, n, d = xs.shape
        xs = kind.project(p, xs.reshape(t * n, d)).reshape(t, n, -1)
    ms = None if mask is None else jnp.swapaxes(mask, 0, 1)
    scan = scan_custom if derivative == "custom" else scan_autodiff
    ys, carry = scan(kind, p, xs, ms, carry, implementation, rmask, go_backwards, unroll,
                     return_sequences)
    if not return_sequences:
        return None, carry
    ys = jnp.swapaxes(ys, 0, 1)
    if go_backwards:  # outputs in reading order, as Keras
        ys = jnp.flip(ys, axis=1)
    return ys, carry
