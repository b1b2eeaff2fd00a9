"""se_atten_v2 descriptor: DPA-1 with ``tebd_input_mode: "strip"`` and ``smooth_type_embedding: true`` forced
(SPEC_DPA1 1), argcheck default ``set_davg_zero: false``.  Everything but the arguments is
:mod:`dpcore.descriptor.dpa1` (which reads the mode from ``type == "se_atten_v2"``)."""

from __future__ import annotations

from . import dpa1_config
from .dpa1 import (MIXED_TYPES, check, deserialize, dim_out, forward, init_params, nlist_sel,  # noqa: F401
                   serialize, spin_backbone, stats, trainable_mask, validate, vjp)

TYPE = "se_atten_v2"
ALIASES = ()


def args() -> list:
    """dargs arguments: those of dpa1 without ``tebd_input_mode``, ``stripped_type_embedding`` and
    ``smooth_type_embedding``; ``set_davg_zero`` defaults to false."""
    return dpa1_config.args(v2=True)
