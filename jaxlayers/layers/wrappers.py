"""Layer wrappers: Bidirectional (a forward and a backward copy of a sequence layer)."""

from __future__ import annotations

import jax.numpy as jnp

from jaxlayers.core import Layer, Masked, as_layer, child_key, layer_factory
from jaxlayers.layers.recurrent import sequence_mask

__all__ = ["Bidirectional", "MERGE_MODES"]

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _reverse_index(mask, t: int):
    """(N, T) time indices that reverse each row's steps 0..last within its own length.

    last = index of the row's last real step; steps after it (the padding) stay put, so
    padding stays at the end. The map is its own inverse.
    """
    steps = jnp.arange(t)[None, :]
    length = t - jnp.argmax(jnp.flip(mask, axis=1).astype(jnp.int32), axis=1)  # (N,)
    length = jnp.where(jnp.any(mask, axis=1), length, t)[:, None]
    return jnp.where(steps < length, length - 1 - steps, steps)


def _take_time(x, index):
    idx = index.reshape(index.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, jnp.broadcast_to(idx, index.shape + x.shape[2:]), axis=1)


def _split_output(out):
    """(output, states): a tuple output is (y, *states) from return_state=True."""
    if isinstance(out, tuple):
        return out[0], tuple(out[1:])
    return out, ()


@layer_factory
def Bidirectional(layer: Layer, merge_mode: str | None = "concat") -> Layer:
    """Run a sequence layer forwards and a copy of it backwards, then merge the outputs.

    Math: y_f = layer(x), y_b = reverse(layer_copy(reverse(x))), y = merge(y_f, y_b), where
    reverse flips each sequence WITHIN ITS OWN LENGTH when a mask is given (a jl.Masked
    input, mask= or lengths=), so padding stays at the end (PyTorch's packed sequences;
    for a prefix mask this equals Keras's go_backwards over the padded sequence). Outputs
    of rank 3 (return_sequences=True) are re-reversed, so y_b[t] lines up with x[t].

    merge_mode: "concat" (last axis), "sum", "mul", "ave", or None (the pair (y_f, y_b)).

    Shapes: x (N, T, D) -> as the wrapped layer, with 2 * units features for "concat".
    params {"forward": p_f, "backward": p_b}, state likewise (separate weights).
    With return_state=True on the wrapped layer the output is Keras's order:
    (y, h_f, [c_f,] h_b, [c_b]), or (y_f, y_b, h_f, ..., h_b, ...) for merge_mode=None.
    initial_state= takes the forward states then the backward ones, (h_f, h_b) or
    (h_f, c_f, h_b, c_b). With a jl.Masked input and sequence outputs the result is a
    jl.Masked with the same mask.

    Wrap a layer that reads forwards (go_backwards=False); the copy is the same
    `(init, apply)` pair with its own params, fed the reversed sequence.

    Raises:
      ValueError: unknown merge_mode (construction); the wrapped layer's shape errors;
        initial_state not an even count.
      TypeError: a layer that is not a jl.Layer (construction).

    Example:
      >>> import jax, jax.numpy as jnp, jaxlayers as jl
      >>> bi = jl.Bidirectional(jl.SimpleRNN(4, return_sequences=True))
      >>> params, state = bi.init(jax.random.key(0), (2, 5, 3))
      >>> list(params)
      ['forward', 'backward']
      >>> y, _ = bi.apply(params, state, jnp.ones((2, 5, 3)))
      >>> y.shape  # forward and backward features concatenated
      (2, 5, 8)
    """
    layer = as_layer("Bidirectional", layer)
    if merge_mode not in MERGE_MODES:
        raise ValueError(f"Bidirectional: merge_mode must be one of {list(MERGE_MODES)}, "
                         f"got {merge_mode!r}.")
    init_fn, apply_fn = layer

    def init(key, input_spec):
        p_f, s_f = init_fn(child_key(key, "forward"), input_spec)
        p_b, s_b = init_fn(child_key(key, "backward"), input_spec)
        return {"forward": p_f, "backward": p_b}, {"forward": s_f, "backward": s_b}

    def _initial(initial_state):
        if initial_state is None:
            return {}, {}
        states = tuple(initial_state) if isinstance(initial_state, (tuple, list)) else ()
        if not states or len(states) % 2:
            raise ValueError(f"Bidirectional: initial_state must list the forward states then "
                             f"the backward ones (an even count: (h_f, h_b) or "
                             f"(h_f, c_f, h_b, c_b)), got {len(states) or 'one array'}.")
        half = len(states) // 2
        f, b = states[:half], states[half:]
        return ({"initial_state": f[0] if half == 1 else f},
                {"initial_state": b[0] if half == 1 else b})

    def _merge(y_f, y_b):
        if merge_mode == "concat":
            return jnp.concatenate([y_f, y_b], axis=-1)
        if merge_mode == "sum":
            return y_f + y_b
        if merge_mode == "mul":
            return y_f * y_b
        if merge_mode == "ave":
            return (y_f + y_b) / 2
        return y_f, y_b

    def apply(params, state, x, *, key=None, training=False, initial_state=None, mask=None,
              lengths=None):
        values, mask, was_masked = sequence_mask("Bidirectional", x, mask, lengths)
        t = values.shape[1]
        if mask is None:
            x_f, x_b = values, jnp.flip(values, axis=1)
            back = lambda y: jnp.flip(y, axis=1)  # noqa: E731
        else:
            index = _reverse_index(mask, t)
            x_f, x_b = Masked(values, mask), Masked(_take_time(values, index),
                                                    _take_time(mask, index))
            back = lambda y: _take_time(y, index)  # noqa: E731
        kw_f, kw_b = _initial(initial_state)
        out_f, s_f = apply_fn(params["forward"], state["forward"], x_f,
                              key=child_key(key, "forward"), training=training, **kw_f)
        out_b, s_b = apply_fn(params["backward"], state["backward"], x_b,
                              key=child_key(key, "backward"), training=training, **kw_b)
        (y_f, states_f), (y_b, states_b) = _split_output(out_f), _split_output(out_b)
        y_f = y_f.values if isinstance(y_f, Masked) else y_f
        y_b = y_b.values if isinstance(y_b, Masked) else y_b
        if y_b.ndim == 3:  # sequence outputs: put the backward ones back in time order
            y_b = back(y_b)
        y = _merge(y_f, y_b)
        if was_masked and y_f.ndim == 3:
            y = tuple(Masked(v, mask) for v in y) if merge_mode is None else Masked(y, mask)
        y = y if isinstance(y, tuple) and merge_mode is None else (y,)
        out = y + states_f + states_b
        new_state = {"forward": s_f, "backward": s_b}
        return (out[0] if len(out) == 1 else out), new_state

    return Layer(init, apply, name="Bidirectional",
                 children={"forward": layer, "backward": layer})
