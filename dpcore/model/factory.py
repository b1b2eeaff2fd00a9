"""Building a model, the one place that picks its type: from an input.json ``model`` section, from a
DeePMD-kit model file (``.dp``/``.yaml``), or from a training state (a checkpoint's ``model`` section and
parameters; reading checkpoint files is :func:`dpcore.train.checkpoint.model_from_checkpoint`).

A section or file with spin gives a :class:`~dpcore.model.spin_model.SpinEnergyModel`, otherwise an
:class:`~dpcore.model.energy_model.EnergyModel`.
"""

from __future__ import annotations

from .energy_model import EnergyModel
from .spin_model import SpinEnergyModel
from .spin_settings import backbone_config, spin_settings

# serialized model ``type`` -> class (DeePMD-kit's names)
MODEL_TYPES = {"standard": EnergyModel, "spin_ener": SpinEnergyModel}


def model_from_config(model_config: dict, seed=None):
    """A fresh model of the right type for an input.json ``model`` section (deterministic for ``seed``)."""
    if isinstance(model_config, dict) and model_config.get("spin") is not None:
        return SpinEnergyModel.from_config(model_config, seed=seed)
    return EnergyModel.from_config(model_config, seed=seed)


def load(path):
    """Load a DeePMD-kit serialized model file (``.dp`` or ``.yaml``): an :class:`EnergyModel`, or a
    :class:`SpinEnergyModel` for ``type: "spin_ener"``."""
    from ..io import read_model_file

    envelope = read_model_file(path)
    model = envelope.get("model")
    if not isinstance(model, dict):
        raise ValueError(f"{path}: no 'model' dict in the file; is this a DeePMD-kit serialized model?")
    mtype = model.get("type", "standard")
    if mtype not in MODEL_TYPES:
        raise NotImplementedError(f"{path}: model type {mtype!r} is not supported by dpcore (supported: 'standard' "
                                  "energy models and 'spin_ener' spin models)")
    return MODEL_TYPES[mtype].from_dict(model, envelope.get("model_def_script"))


def model_from_state(model_cfg: dict, params: dict):
    """The model of a normalised ``model`` section (``sel`` resolved) with these parameters (a spin model's
    are its backbone's)."""
    if model_cfg.get("spin") is None:
        return EnergyModel(model_cfg, params)
    from ..config import normalize_model

    cfg = normalize_model(model_cfg)
    settings = spin_settings(cfg["spin"], cfg["type_map"])
    return SpinEnergyModel(EnergyModel(backbone_config(cfg, settings["use_spin"]), params), settings,
                           model_def_script=model_cfg)
