"""Behaviour contracts checked inside each backend process (not numbers: what a backend accepts or refuses).

A contract is one function ``check(backend) -> {"status": PASS | FAIL | NOT_APPLICABLE, "detail": str}`` and one
entry in :data:`CONTRACTS` (decorator :func:`contract`).  A contract whose subject does not exist yet in the
core returns :data:`NOT_APPLICABLE` with the reason; the report prints it, it is neither a pass nor a failure.
"""

from __future__ import annotations

import importlib
import importlib.util
import traceback

PASS, FAIL, NOT_APPLICABLE = "pass", "FAIL", "not applicable yet"
CONTRACTS: dict = {}


def contract(name: str):
    def register(check):
        CONTRACTS[name] = check
        return check

    return register


def run_contracts(backend) -> dict:
    results = {}
    for name, check in CONTRACTS.items():
        try:
            results[name] = check(backend)
        except Exception:  # a crashing check is a failure with its traceback
            results[name] = {"status": FAIL, "detail": "the check raised:\n" + traceback.format_exc()}
    return results


# SPEC "Decisions": use_default_pf works on these, raises NotImplementedError (at loss construction) elsewhere
USE_DEFAULT_PF_REFUSED = {"tensorflow": "TensorFlow backend does not support use_default_pf=True.",
                          "paddle": "Paddle backend does not support use_default_pf=True."}
LOSS_CONFIG = {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000.0, "limit_pref_f": 1.0,
               "start_pref_pf": 1.0, "limit_pref_pf": 1.0, "use_default_pf": True}


def _construct_loss(backend, loss_config: dict):
    """Build an ``ener`` loss for ``backend`` with the core's constructor.

    Convention (the loss issue must provide one of them): ``dpcore.loss.make_loss(loss_config, backend=name)``,
    or ``dpcore.loss.ener.EnergyLoss(**options, backend=name)``.
    """
    loss = importlib.import_module("dpcore.loss")
    if hasattr(loss, "make_loss"):
        return loss.make_loss(dict(loss_config), backend=backend.name)
    ener = importlib.import_module("dpcore.loss.ener")
    if hasattr(ener, "EnergyLoss"):
        options = {k: v for k, v in loss_config.items() if k != "type"}
        return ener.EnergyLoss(**options, backend=backend.name)
    raise AttributeError("dpcore.loss exists but provides neither make_loss(loss_config, backend=name) nor "
                         "dpcore.loss.ener.EnergyLoss(**options, backend=name); adapt "
                         "dpcore.conformance.contracts._construct_loss to the loss API")


@contract("use_default_pf")
def use_default_pf(backend) -> dict:
    """``use_default_pf: true`` is refused on TensorFlow and Paddle with NotImplementedError naming the backend
    and the option (SPEC 8.2), accepted elsewhere; ``capabilities["use_default_pf"]`` says the same."""
    if importlib.util.find_spec("dpcore.loss") is None:
        return {"status": NOT_APPLICABLE, "detail": "dpcore.loss does not exist yet (the ener loss is not written)"}
    refused = backend.name in USE_DEFAULT_PF_REFUSED
    declared = backend.capabilities.get("use_default_pf")
    problems = []
    if declared is not (not refused):
        problems.append(f"capabilities['use_default_pf'] is {declared!r}, expected {not refused}")
    try:
        _construct_loss(backend, LOSS_CONFIG)
        outcome = None
    except NotImplementedError as e:
        outcome = e
    if refused and outcome is None:
        problems.append("building the loss with use_default_pf=True did not raise NotImplementedError")
    elif refused and not ("use_default_pf" in str(outcome) and backend.name.lower() in str(outcome).lower()):
        problems.append(f"NotImplementedError message does not name the backend and the option: {outcome}")
    elif not refused and outcome is not None:
        problems.append(f"building the loss with use_default_pf=True raised NotImplementedError: {outcome}")
    if problems:
        return {"status": FAIL, "detail": "; ".join(problems)}
    what = f"refused: {outcome}" if refused else "accepted"
    return {"status": PASS, "detail": f"use_default_pf=True {what}"}
