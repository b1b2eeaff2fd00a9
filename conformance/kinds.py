"""Every output kind, registered: the one place that imports all ``kinds_*`` modules.

The registry itself (:class:`CaseContext`, :class:`OutputKind`, the :func:`output_kind` decorator, :data:`KINDS`,
:func:`output_label`) is :mod:`dpcore.conformance.registry`; the kinds modules import only the registry, so
there is no import cycle.  The worker, the comparison and the runner import :data:`KINDS` from here, so every
kind is registered, in this order (the report's row order):

* :mod:`~dpcore.conformance.kinds_model`: ``descriptor``, ``analytic``, ``autodiff``, ``spin``, ``spin_autodiff``;
* :mod:`~dpcore.conformance.kinds_train`: ``loss``, ``loss_default_pf``, ``train_step`` (opt-in).

A new kinds module is one more import line below.
"""

from __future__ import annotations

from . import kinds_model, kinds_train  # noqa: F401  (registration, in report order)
from .registry import KINDS, CaseContext, OutputKind, output_kind, output_label

__all__ = ["KINDS", "CaseContext", "OutputKind", "output_kind", "output_label"]
