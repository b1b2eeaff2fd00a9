"""Precision names of input.json (``"default"``, ``"float32"``, ``"single"``, ...) -> dtypes (SPEC 6.6)."""

from __future__ import annotations

_PRECISION = {"default": "float64", "double": "float64", "float64": "float64", "single": "float32",
              "float32": "float32", "half": "float16", "float16": "float16", "bfloat16": "bfloat16"}


def precision_name(p: str) -> str:
    """Canonical dtype name of a precision setting (``"default"`` -> ``"float64"``)."""
    try:
        return _PRECISION[str(p).lower()]
    except KeyError:
        raise ValueError(f"unknown precision {p!r}; expected one of {sorted(_PRECISION)}") from None


def dtype_of(xp, precision: str):
    """The dtype of namespace ``xp`` for a precision setting (NotImplementedError if ``xp`` lacks it)."""
    name = precision_name(precision)
    dt = getattr(xp, name, None)
    if dt is None:
        raise NotImplementedError(f"precision {name} is not available in this array namespace")
    return dt


def compute_precision(section: dict):
    """The mixed-precision compute dtype name of a descriptor or fitting section (``section["mixed_precision"]
    ["compute_prec"]``, set by training from ``training.mixed_precision``), or None (one precision)."""
    mixed = section.get("mixed_precision")
    return None if not mixed else precision_name(mixed["compute_prec"])
