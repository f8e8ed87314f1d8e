"""The one format for pytree paths: keys joined by "/" ("features/conv1/kernel", "0/bias")."""

from __future__ import annotations

from typing import Any

import jax

__all__ = ["path_entry", "path_string", "path_strings", "leaf_paths"]


def path_entry(entry: Any) -> str:
    """One key of a path: a dict key, a sequence index or an attribute name, as a str."""
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def path_string(path) -> str:
    """The "/"-joined string of a pytree key path ("features/conv1/kernel", "0/bias").

    `path` as `jax.tree_util.tree_flatten_with_path` gives it: DictKey entries give their
    key, SequenceKey entries their index, GetAttrKey entries (`jl.Masked`) their name.
    This is the path `jl.summary` prints, freezing and regularizers select, and error
    messages name.
    """
    return "/".join(path_entry(e) for e in path)


def path_strings(tree) -> list[str]:
    """Every leaf's path string, in the order of `jax.tree.leaves(tree)`.

    Shows what a freezing predicate can select: `jl.path_strings(params)` ->
    ["classifier/fc1/bias", "classifier/fc1/kernel", ..., "features/conv2/kernel"].
    """
    return [path_string(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def leaf_paths(tree: Any, names=None) -> list[str]:
    """`path_strings`, with the i-th element of a tuple `tree` called names[i] ("params/0/kernel").

    A leaf at the root has the path "" (or its name).
    """
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    if names is None:
        return [path_string(p) for p in paths]
    return ["/".join(filter(None, [names[p[0].idx], path_string(p[1:])])) for p in paths]
