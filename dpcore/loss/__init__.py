"""Training losses, written once against the array API (SPEC 8).

``make_loss(loss_cfg, backend, start_lr)`` builds the loss of a normalised ``loss`` section:

* ``type: "ener"`` (alias ``"ener_hess"``) -> :class:`~dpcore.loss.ener.EnergyLoss`;
* ``type: "ener_spin"`` -> :class:`~dpcore.loss.ener_spin.EnergySpinLoss`.

A loss object is called as ``loss(model_out, labels, lr) -> (loss, metrics)`` with arrays of any
namespace (that of ``model_out["energy"]``); ``lr`` is the current learning rate (float or 0-d array)
and ``start_lr`` the schedule's ``start_lr``.  ``label_requirements`` lists the labels the active terms
read; ``display_keys`` the lcurve columns (sorted, no ``l2_`` keys).

Backend restrictions are data in the backend registry (``dpcore.backends.info(name).capabilities``): ``use_default_pf``
raises NotImplementedError at construction on TensorFlow and Paddle.  Every other option behaves the
same on every backend; a loss term is active when its start OR limit prefactor is non-zero.
"""

from __future__ import annotations

from .common import Loss
from .ener import EnergyLoss
from .ener_spin import EnergySpinLoss

LOSS_TYPES = {"ener": EnergyLoss, "ener_hess": EnergyLoss, "ener_spin": EnergySpinLoss}

__all__ = ["EnergyLoss", "EnergySpinLoss", "LOSS_TYPES", "Loss", "make_loss"]


def make_loss(loss_cfg: dict, backend: str = "numpy", start_lr: float = 1.0) -> Loss:
    """The loss of a (normalised) ``loss`` section for ``backend`` (type defaults to ``"ener"``)."""
    if not isinstance(loss_cfg, dict):
        raise TypeError(f"loss: expected a dict, got {type(loss_cfg).__name__}")
    kind = loss_cfg.get("type", "ener")
    if kind not in LOSS_TYPES:
        raise ValueError(f"loss/type: expected one of {sorted(LOSS_TYPES)}, got '{kind}'")
    return LOSS_TYPES[kind](loss_cfg, backend=backend, start_lr=start_lr)
