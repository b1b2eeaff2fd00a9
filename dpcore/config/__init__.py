"""input.json schema and normalisation (SPEC 11; DeePMD-kit 3.2 argcheck defaults and aliases).

>>> cfg = normalize_config(json.load(open("input.json")))   # validated, defaults filled
>>> write_normalized(cfg, "out.json")

:func:`normalize_config` resolves aliases to canonical names, drops keys that
start with ``_``, fills every default and checks types, required keys,
unknown keys and the rules argcheck cannot express (mutually exclusive keys,
list lengths against ``type_map``, value ranges).  Every problem raises
:class:`ConfigError` whose message starts with the location, e.g.
``model/descriptor/sel: ...``; an unknown key gets the closest valid key *of
that section* (``loss`` of type ``ener_spin``: ``start_pref_f`` -> ``start_pref_fr``).

The structure is declared with ``dargs`` (imported lazily; ``pip install dpcore[train]``);
dargs normalises, and the error reporting is ours.

The package: :mod:`~dpcore.config.schema` (the dargs declaration, descriptor/fitting variants from their
registries), :mod:`~dpcore.config.hooks` (dargs errors re-worded with their location),
:mod:`~dpcore.config.rules` (cross-key rules), :mod:`~dpcore.config.errors` (ConfigError and validators);
this module reads, normalises and writes.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from .errors import ACTIVATIONS, PRECISIONS, ConfigError, short, suggest
from .hooks import alias_hook, from_dargs, required_hook, strict_hook, traverse, type_hook, variant_hook
from .rules import check_exclusive, check_semantics
from .schema import dargs, schema

__all__ = [
    "ConfigError",
    "normalize_config",
    "normalize_model",
    "load_config",
    "write_normalized",
    "NormalizedConfig",
    "ACTIVATIONS",
    "PRECISIONS",
    "schema",
    "suggest",
]


class NormalizedConfig(dict):
    """A normalised input dict that remembers the file it was read from (``source_path``)."""

    source_path: str | None = None


def normalize_config(d: dict) -> NormalizedConfig:
    """Validated copy of an input dict with every default filled (SPEC 11).

    Aliases become canonical names, keys starting with ``_`` are dropped, the
    TensorFlow spin form (``spin_norm``/``virtual_len``) gains ``virtual_scale``.
    Raises :class:`ConfigError` (message starts with the location).
    Idempotent: ``normalize_config(normalize_config(d)) == normalize_config(d)``.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"(top level): expected a dict (JSON object), got {short(d)}")
    dg = dargs()
    arg = schema()
    # 1. flag values of variants and aliases given twice, on the raw input
    traverse(d, key_hook=alias_hook, variant_hook=variant_hook)
    try:
        # 2. aliases -> canonical names, "_*" keys dropped, no defaults yet
        raw = arg.normalize_value(copy.deepcopy(d), trim_pattern="_*", do_default=False)
    except dg.dargs.ArgumentError as exc:
        raise from_dargs(exc) from None
    traverse(raw, key_hook=required_hook, value_hook=type_hook, sub_hook=strict_hook)
    check_exclusive(raw)
    try:
        full = arg.normalize_value(raw, trim_pattern="_*")
        # a section defaulted to {} (loss, optimizer) gets its own defaults in a second pass
        full = arg.normalize_value(full, trim_pattern="_*", inplace=True)
    except dg.dargs.ArgumentError as exc:
        raise from_dargs(exc) from None
    check_semantics(full)
    out = NormalizedConfig(full)
    out.source_path = getattr(d, "source_path", None)
    return out


def load_config(path: str | os.PathLike) -> NormalizedConfig:
    """Read a JSON input file and normalise it; remembers ``source_path``."""
    p = Path(path)
    if p.suffix.lower() in (".yaml", ".yml"):
        raise ConfigError(f"{p}: YAML input is not supported; convert it to JSON")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON ({exc})") from None
    out = normalize_config(d)
    out.source_path = str(p.resolve())
    return out


def write_normalized(d: dict, path: str | os.PathLike, source: str | os.PathLike | None = None
                     ) -> NormalizedConfig:
    """Write the normalised input (all defaults filled) as JSON to ``path``.

    Refuses to overwrite the input it was read from (``source``, or the
    ``source_path`` remembered by :func:`load_config`).  Returns the normalised dict.
    """
    src = source if source is not None else getattr(d, "source_path", None)
    target = Path(path)
    if src is not None and Path(src).resolve() == target.resolve():
        raise ConfigError(
            f"{target}: refusing to overwrite the input file the configuration was read "
            "from; write the normalised copy to another path (e.g. out.json)"
        )
    norm = normalize_config(d)
    norm.source_path = None if src is None else str(Path(src).resolve())
    target.write_text(json.dumps(norm, indent=4) + "\n")
    return norm


def normalize_model(model: dict) -> dict:
    """Validated ``model`` section with every default filled (same rules and messages as :func:`normalize_config`)."""
    if not isinstance(model, dict):
        raise ConfigError(f"model: expected a dict (JSON object), got {short(model)}")
    wrapper = {"model": model, "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-8},
               "training": {"training_data": {"systems": "(none)"}, "numb_steps": 1}}  # data are not read here
    if "spin" in model:
        wrapper["loss"] = {"type": "ener_spin"}
    return dict(normalize_config(wrapper)["model"])
