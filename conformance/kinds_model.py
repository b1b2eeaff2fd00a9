"""Output kinds of the energy and spin models: the descriptor, the model outputs with the core's analytic
derivatives and with the backend's autodiff, and the spin-model outputs (see :mod:`dpcore.conformance.registry`
for what a kind is; :mod:`dpcore.conformance.kinds` imports this module).

This module imports no framework: ``ctx.backend`` is the adapter object the worker created.
"""

from __future__ import annotations

from .registry import MODEL_OUTPUTS, CaseContext, model_outputs, output_kind


@output_kind("descriptor", outputs=("descriptor",))
def descriptor(ctx: CaseContext) -> dict:
    """The model's descriptor D (nf, nloc, dim_out) (se_e2_a: ng * axis_neuron), in the descriptor precision."""
    from dpcore.descriptor import get_descriptor
    from dpcore.precision import precision_name
    from dpcore.pairs import pair_vectors
    from dpcore.xp import namespace

    dcfg = ctx.model.config["descriptor"]
    coord = ctx.inputs["coord"]
    xp = namespace(coord)
    rij = pair_vectors(coord, ctx.inputs.get("box"), ctx.inputs)
    rij = xp.astype(rij, getattr(xp, precision_name(dcfg["precision"])))
    D, _ = get_descriptor(dcfg["type"]).forward(dcfg, ctx.params["descriptor"], rij, ctx.inputs, ctx.blocks)
    return {"descriptor": D}


@output_kind("analytic", outputs=MODEL_OUTPUTS)
def analytic(ctx: CaseContext) -> dict:
    """Energy-model outputs with the core's analytic derivatives (SPEC 6.5), atomic virial included."""
    return model_outputs(ctx, "analytic")


@output_kind("autodiff", outputs=MODEL_OUTPUTS, reference="analytic", requires=("autodiff",))
def autodiff(ctx: CaseContext) -> dict:
    """The same outputs with forces and virials from the backend's automatic differentiation."""
    return model_outputs(ctx, "autodiff")


SPIN_OUTPUTS = ("atom_energy", "energy", "force", "force_mag", "virial", "atom_virial", "mask_mag")


def _spin_outputs(ctx: CaseContext, force_mode: str) -> dict:
    import numpy as np

    from dpcore.model.spin_model import model_forward

    out = model_forward(ctx.backend, ctx.model.config, ctx.params, ctx.inputs, ctx.blocks, atomic_virial=True,
                        force_mode=force_mode)
    missing = [k for k in SPIN_OUTPUTS if k not in out]
    if missing:
        raise KeyError(f"spin model_forward(force_mode={force_mode!r}) returned no {missing} (got {sorted(out)})")
    out = {k: out[k] for k in SPIN_OUTPUTS}
    mask = np.asarray(ctx.backend.to_numpy(out["mask_mag"]))
    if mask.dtype != np.bool_:
        raise TypeError(f"mask_mag must be bool, got {mask.dtype}")
    out["mask_mag"] = mask.astype(np.float64)  # compared as 0/1 (any difference is an infinite relative error)
    return out


@output_kind("spin", outputs=SPIN_OUTPUTS, model_types=("spin_ener",))
def spin(ctx: CaseContext) -> dict:
    """Spin-model outputs (SPEC 7.1) with the core's analytic derivatives: force (fixed spin), force_mag,
    the non-symmetric virial with spins held fixed, atom_virial; mask_mag as 0/1 float64."""
    return _spin_outputs(ctx, "analytic")


@output_kind("spin_autodiff", outputs=SPIN_OUTPUTS, reference="spin", requires=("autodiff",), model_types=("spin_ener",))
def spin_autodiff(ctx: CaseContext) -> dict:
    """The spin outputs with derivatives by the backend's autodiff over (coord, spin, box)."""
    return _spin_outputs(ctx, "autodiff")
