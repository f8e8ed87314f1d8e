"""`summary`: a Keras-like table of a model's layers, as rows and as text."""


from typing import Any, Callable, NamedTuple

import jax

from jaxlayers.core import Layer, as_layer, count_params, output_spec, resolve_spec, shapes

__all__ = ["summary", "Summary", "SummaryRow"]


class SummaryRow(NamedTuple):
    """One row of `jl.summary`: a layer (or one call of a shared layer) of the model."""

    path: str            # "features/conv1" ("-" for the model itself); "lstm#2": 2nd call
    type: str            # the layer's name: "Dense", "Conv2D", "Bidirectional", ...
    output_shape: Any    # a shape tuple, or a tuple/dict/Masked of them
    params: int          # scalars in its params (0 for a repeated call: shared)
    state: int           # scalars in its state


class Summary(NamedTuple):
    """What `jl.summary` returns: the rows, the totals, and the table as text (`str`)."""

    rows: tuple
    total_params: int
    total_state: int
    text: str

    def __str__(self) -> str:
        return self.text


def _rows(layer: Layer, params, state, spec, path: tuple, out=None) -> list[SummaryRow]:
    """The rows of `layer` on `spec`; `out`, its output spec when its parent traced it
    (a compose call may pass keyword inputs that change the output)."""
    if layer.calls is not None and layer.children is not None:
        rows, seen = [], {}
        for name, child_spec, child_out in layer.calls(spec):
            seen[name] = seen.get(name, 0) + 1
            child = layer.children[name]
            sub = _rows(child, params[name], state[name], child_spec, path + (str(name),),
                        child_out)
            if seen[name] > 1:  # a shared child: its params are the first call's
                sub = [r._replace(path=f"{r.path}#{seen[name]}", params=0, state=0)
                       for r in sub]
            rows += sub
        return rows
    if out is None:
        out = output_spec(layer, spec, params, state)
    return [SummaryRow("/".join(path) or "-", layer.name, shapes(out), count_params(params),
                       count_params(state))]


def summary(layer: Layer, input_shape: Any = None, *,
            print_fn: Callable | None = print) -> Summary:
    """Print (and return) a Keras-like table: layer path, type, output shape, params.

    `serial` and `jl.compose` models are expanded, recursively (a compose child called
    twice has a row per call, "name#2" for the second, with its params counted once);
    other combinators show as one row holding their children's params. Shapes include the
    batch axis. Computed with `jax.eval_shape`, so even a 138M-parameter model is
    summarised without allocating it.

    Returns:
      a `Summary`: `rows` (`SummaryRow`s of path, type, output_shape, params, state),
      `total_params`, `total_state`, and `text` (what is printed; also `str(summary)`).
      `print_fn=None` prints nothing.
    """
    layer = as_layer("summary", layer)
    spec = resolve_spec(layer, input_shape)
    params, state = jax.eval_shape(lambda k: layer.init(k, spec), jax.random.key(0))
    rows = tuple(_rows(layer, params, state, spec, ()))
    total, extra = count_params(params), count_params(state)
    header = ("Layer (path)", "Type", "Output shape", "Param #")
    table = [header] + [(r.path, r.type, str(r.output_shape), f"{r.params:,}") for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    line = "-" * (sum(widths) + 6)

    def fmt(r):
        return "  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                          r[2].ljust(widths[2]), r[3].rjust(widths[3])])

    text = "\n".join([line, fmt(header), line, *map(fmt, table[1:]), line,
                      f"Total params: {total:,}", f"Non-trainable state: {extra:,}", line])
    if print_fn is not None:
        print_fn(text)
    return Summary(rows, total, extra, text)
