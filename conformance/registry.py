"""The registry of output kinds: what one backend process computes for one case.

A kind is one function ``compute(ctx) -> {output name: array}`` and one entry in :data:`KINDS`,
made by the :func:`output_kind` decorator::

    @output_kind("loss", outputs=("loss", "rmse_e", "rmse_f"))
    def loss(ctx):
        ...
        return {"loss": value, ...}

* ``outputs``: the output names, in report order;
* ``reference``: the kind of the NumPy reference run these outputs are compared with (default: the
  kind itself), e.g. autodiff forces are compared with NumPy's analytic forces;
* ``requires``: backend capabilities (``backend.capabilities[name]`` true) the kind needs; a backend
  without them does not compute the kind, and the report does not expect it;
* ``model_types``: the model types (``model.model_type``: ``"standard"``, ``"spin_ener"``) the kind applies
  to (default: standard energy models); the worker records each case's model type;
* ``opt_in``: the kind runs only on the cases whose ``case["kinds"]`` lists it (costly kinds, e.g. training);
* ``reference_backend``: compare with that backend's run of the kind instead of NumPy's (for kinds NumPy cannot
  compute, e.g. ``train_step`` needs autodiff: reference torch); that backend's own rows are the reference.

Arrays returned may be framework arrays; the worker converts them with ``backend.to_numpy`` and undoes
the type sorting of the atoms.  Saved keys are ``"<kind>.<output>"``.

The kinds themselves live in the ``kinds_*`` modules, which import only this module (and the host-side
case builders); :mod:`dpcore.conformance.kinds` is the one place that imports them all, in report order.
Users of :data:`KINDS` (worker, compare, runner) import it from there, so every kind is registered.
This module imports no framework: ``ctx.backend`` is the adapter object the worker created.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class CaseContext:
    """Everything a kind needs: the adapter, the model (NumPy parameters in ``model.params``), the
    parameters and prepared inputs as backend arrays, the atom blocks of :func:`dpcore.infer.inputs.prepare`."""

    backend: object
    model: object
    params: dict
    inputs: dict
    blocks: object
    case: dict
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OutputKind:
    name: str
    compute: Callable[[CaseContext], dict]
    outputs: tuple
    reference: str
    requires: tuple
    model_types: tuple = ("standard",)
    opt_in: bool = False
    reference_backend: str | None = None

    def applies_to(self, capabilities: dict, model_type: str = "standard", case: dict | None = None) -> bool:
        if self.opt_in and self.name not in (case or {}).get("kinds", ()):
            return False
        return model_type in self.model_types and all(bool(capabilities.get(c, False)) for c in self.requires)


KINDS: dict[str, OutputKind] = {}


def output_kind(name: str, *, outputs, reference: str | None = None, requires=(), model_types=("standard",),
                opt_in: bool = False, reference_backend: str | None = None):
    """Register ``compute`` as output kind ``name`` (see module docstring)."""

    def register(compute):
        KINDS[name] = OutputKind(name, compute, tuple(outputs), reference or name, tuple(requires), tuple(model_types),
                                 bool(opt_in), reference_backend)
        return compute

    return register


def output_label(kind: str, output: str) -> str:
    """Row label in the report: ``force`` for the analytic kind, ``force [autodiff]`` otherwise."""
    if kind in ("analytic", output):
        return output
    return f"{output} [{kind}]"


# ------------------------------------------------------------------------------- shared by several kinds
MODEL_OUTPUTS = ("atom_energy", "energy", "force", "virial", "atom_virial")


def model_outputs(ctx: CaseContext, force_mode: str) -> dict:
    """The energy-model outputs :data:`MODEL_OUTPUTS` of the case on ``ctx.backend`` (atomic virial included),
    with the core's analytic derivatives (``force_mode="analytic"``) or the backend's autodiff."""
    out = ctx.backend.model_forward(ctx.model.config, ctx.params, ctx.inputs, ctx.blocks,
                                    atomic_virial=True, force_mode=force_mode)
    missing = [k for k in MODEL_OUTPUTS if k not in out]
    if missing:
        raise KeyError(f"model_forward(force_mode={force_mode!r}) returned no {missing} (got {sorted(out)})")
    return {k: out[k] for k in MODEL_OUTPUTS}
