"""Nested dicts/lists/tuples of arrays ("pytrees") for the adapters: flatten, rebuild, map."""

from __future__ import annotations


def leaves(tree) -> list:
    """Leaves of a nested dict/list/tuple, depth-first in insertion order (None and scalars included)."""
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in leaves(v)]
    if isinstance(tree, (list, tuple)):
        return [x for v in tree for x in leaves(v)]
    return [tree]


def rebuild(tree, values):
    """``tree``'s structure with its leaves replaced, in order, by ``values`` (an iterator)."""
    if isinstance(tree, dict):
        return {k: rebuild(v, values) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(rebuild(v, values) for v in tree)
    return next(values)


def tree_map(fn, tree):
    """Apply ``fn`` to every leaf of ``tree``."""
    return rebuild(tree, iter([fn(x) for x in leaves(tree)]))
