"""Errors of input.json checking, and the small validators shared by the config rules and by the
descriptor and fitting modules' ``check`` (every message starts with the location of the key)."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from typing import Any

ACTIVATIONS = ("tanh", "relu", "relu6", "softplus", "sigmoid", "silu", "gelu", "gelu_tf",
               "none", "linear", "silut")
PRECISIONS = ("default", "float16", "float32", "float64", "bfloat16", "half", "single", "double")
SEL_AUTO = re.compile(r"^auto(:\d+(\.\d*)?)?$")


class ConfigError(ValueError):
    """Invalid input; the message starts with the location (``model/descriptor/sel: ...``)."""


def need(cond: bool, loc: str, msg: str) -> None:
    """Raise ``ConfigError("<loc>: <msg>")`` unless ``cond``."""
    if not cond:
        raise ConfigError(f"{loc}: {msg}")


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def loc_of(path, name: str | None = None) -> str:
    """``model/descriptor/sel`` from a dargs path (root ``input`` dropped) and a key name."""
    parts = [p for p in (*(path or ()), *([name] if name else ())) if p != "input"]
    return "/".join(parts) if parts else "(top level)"


def short(value: Any) -> str:
    """``type value`` of a value, cut to 60 characters, for messages."""
    text = json.dumps(value) if _jsonable(value) else repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def suggest(key: str, allowed: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest key of ``allowed`` (declaration order).

    Candidates are ranked by difflib similarity, then by the length of the common
    prefix, then by declaration order — so in ``ener_spin`` ``start_pref_f`` gives
    ``start_pref_fr`` (same prefix, declared before ``start_pref_fm``), not
    ``start_pref_pf`` (same similarity, shorter common prefix).
    """
    def prefix(a: str, b: str) -> int:
        return len(os.path.commonprefix([a, b]))

    scored = []
    for i, cand in enumerate(allowed):
        r = difflib.SequenceMatcher(None, key, cand).ratio()
        if r >= 0.6:
            scored.append((-round(r, 6), -prefix(key, cand), i, cand))
    return f"; did you mean '{min(scored)[3]}'?" if scored else ""



def check_act_prec(sec: dict, loc: str) -> None:
    """``activation_function``, ``precision`` and positive ``neuron`` widths of a network section."""
    act = sec["activation_function"].lower()
    base = act.split(":")[0]
    need(act in ACTIVATIONS or (base in ("silut", "custom_silu") and ":" in act),
         f"{loc}/activation_function",
         f"unknown activation '{sec['activation_function']}'; expected one of "
         f"{list(ACTIVATIONS)} or 'silut:T'" + suggest(act, list(ACTIVATIONS)))
    need(sec["precision"] in PRECISIONS, f"{loc}/precision",
         f"unknown precision '{sec['precision']}'; expected one of {list(PRECISIONS)}")
    need(all(n > 0 for n in sec["neuron"]), f"{loc}/neuron",
         f"layer widths must be positive, got {sec['neuron']}")


def check_types(items, ntypes: int, loc: str, pairs: bool) -> None:
    """Every entry is a type (or a pair of types) in ``0..ntypes-1``."""
    for it in items:
        ok = len(it) == 2 and all(0 <= t < ntypes for t in it) if pairs else 0 <= it < ntypes
        need(ok, loc, f"entry {it} is not {'a pair of types' if pairs else 'a type'} in 0..{ntypes - 1}")
