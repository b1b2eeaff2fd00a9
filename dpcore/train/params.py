"""The trainable / frozen split of a parameter dict (what ``dpcore train`` differentiates and updates)."""

from __future__ import annotations

from ..model.init import trainable_mask  # what each part trains: its registered module decides

__all__ = ["trainable_mask", "split_params", "merge_params", "leaves"]


def split_params(params: dict, mask: dict) -> tuple[dict, dict]:
    """``(trainable, frozen)`` sub-dicts of ``params`` (empty branches dropped)."""
    tr, fr = {}, {}
    for k, v in params.items():
        if isinstance(v, dict):
            a, b = split_params(v, mask[k])
            if a:
                tr[k] = a
            if b or not a:
                fr[k] = b
        elif mask[k]:
            tr[k] = v
        else:
            fr[k] = v
    return tr, fr


def merge_params(trainable: dict, frozen: dict) -> dict:
    """Inverse of :func:`split_params`."""
    out = dict(frozen)
    for k, v in trainable.items():
        out[k] = merge_params(v, frozen.get(k, {})) if isinstance(v, dict) else v
    return out



def leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from leaves(v)
    else:
        yield tree

