"""``training.mixed_precision``, with DeePMD-kit's meaning: float32 parameters, bfloat16 dense layers.

DeePMD-kit's key is ``{"output_prec": "float32", "compute_prec": "float16" | "bfloat16"}``: the trainable
parameters and every layer's output are in ``output_prec`` (the descriptor and fitting ``precision`` are
overridden to it), while the matrix products, biases and activations of the embedding and fitting nets run in
``compute_prec`` (a fitting net's final linear layer stays in ``output_prec``); see
:func:`dpcore.network.layer_forward`.  Environment matrices, energies, forces, virials and the loss keep their
usual precisions.  The model written by ``dpcore freeze`` is a plain float32 model.

dpcore implements ``compute_prec: "bfloat16"``, which has float32's exponent range, so no loss scaling is needed.
``"float16"`` is refused: its gradients underflow without the dynamic loss scaling DeePMD-kit's TensorFlow
backend adds, and dpcore does not have that.  Which device types have bfloat16 matrix products is the backend
registry's ``mixed_precision`` capability (Paddle: GPU only).
"""

from __future__ import annotations

import copy
import logging

from ..precision import precision_name

log = logging.getLogger("dpcore.train")

OUTPUT_PRECISIONS = ("float32",)
COMPUTE_PRECISIONS = ("bfloat16",)


def check(section) -> dict | None:
    """Validate a ``training.mixed_precision`` section; returns it with canonical names (or None when absent)."""
    if section is None:
        return None
    if not isinstance(section, dict) or "compute_prec" not in section:
        raise ValueError("training/mixed_precision must be a dict with compute_prec (and optionally output_prec), "
                         f"got {section!r}")
    names = {}
    for key, default in (("output_prec", "float32"), ("compute_prec", None)):
        value = section.get(key, default)
        try:
            names[key] = precision_name(value)
        except ValueError:
            raise ValueError(f"training/mixed_precision/{key}: unknown precision {value!r}") from None
    if names["output_prec"] not in OUTPUT_PRECISIONS:
        raise ValueError(f"training/mixed_precision/output_prec must be float32 (as in DeePMD-kit), "
                         f"got {section.get('output_prec')!r}")
    if names["compute_prec"] == "float16":
        raise NotImplementedError("training/mixed_precision/compute_prec 'float16' needs dynamic loss scaling, which "
                                  "dpcore does not have (its gradients underflow); use 'bfloat16'")
    if names["compute_prec"] not in COMPUTE_PRECISIONS:
        raise ValueError(f"training/mixed_precision/compute_prec must be 'bfloat16' (or DeePMD-kit's 'float16'), "
                         f"got {section.get('compute_prec')!r}")
    return names


def training_model_config(model_cfg: dict, section, backend_info, device_type: str) -> dict:
    """The model config the training steps evaluate: ``model_cfg`` itself without mixed precision, else a copy
    whose descriptor and fitting run in ``output_prec`` with ``compute_prec`` layers (see the module docstring).

    ``backend_info``: the backend's :class:`~dpcore.backends.registry.BackendInfo`; ``device_type``: e.g. "cpu".
    """
    names = check(section)
    if names is None:
        return model_cfg
    allowed = backend_info.capabilities.get("mixed_precision", [])
    if device_type not in allowed:
        raise NotImplementedError(
            f"training/mixed_precision: backend {backend_info.name!r} has no bfloat16 matrix product on "
            f"{device_type!r} (it has on: {', '.join(allowed) or 'no device'}); remove mixed_precision or use "
            f"precision 'float32' for a faster float model")
    cfg = copy.deepcopy(model_cfg)
    for key in ("descriptor", "fitting_net"):
        cfg[key]["precision"] = names["output_prec"]
        cfg[key]["mixed_precision"] = dict(names)
    return cfg


def use_output_precision(cfg: dict) -> None:
    """With ``training.mixed_precision``, make the model's descriptor and fitting ``precision`` its ``output_prec``
    (in place; the parameters, checkpoints and the frozen model are then float32, as DeePMD-kit's)."""
    names = check(cfg["training"].get("mixed_precision"))
    if names is None:
        return
    for key in ("descriptor", "fitting_net"):
        section = cfg["model"][key]
        if precision_name(section.get("precision", "default")) != names["output_prec"]:
            log.info("training/mixed_precision: model/%s/precision %s -> %s (the parameters' precision)", key,
                     section.get("precision"), names["output_prec"])
            section["precision"] = names["output_prec"]
