"""Loss test data shared by tests/test_loss_*.py and tests/isolated/test_loss_backends.py: a small batch of
model outputs and labels, the learning rates, the base prefactors and the comparison of two loss results."""

from __future__ import annotations

import math

import numpy as np

from helpers import TOL

START_LR = 1e-3
LR = 3.7e-4  # current learning rate: prefactors mix start and limit


# --------------------------------------------------------------------------------------------------- data
DEFAULT_FILL = {"energy": 0.0, "force": 0.0, "virial": 0.0, "atom_ener": 0.0, "atom_pref": 1.0,
                "atom_ener_coeff": 1.0, "drdq": 0.0, "force_mag": 0.0}


def make_batch(seed=0, nf=3, nloc=5, ngc=2, missing=(), masked=True, mag=(1, 0, 1, 1, 0)):
    """Model outputs and labels of a small batch (NumPy float64; mask int32; find flags Python floats).

    masked: frame 1 has two padded atoms and frame 2 one excluded atom (non-uniform N_f).
    missing: label names whose find flag is 0 (their arrays filled with the loader's default).
    mag: which atom slots are magnetic (mask_mag) for the spin outputs.
    """
    rng = np.random.default_rng(seed)
    mask = np.ones((nf, nloc), np.int32)
    if masked:
        mask[1, 3:] = 0
        mask[min(2, nf - 1), 0] = 0
    ae = rng.normal(-1.0, 0.3, (nf, nloc, 1)) * mask[..., None]
    out = {
        "atom_energy": ae, "energy": ae.sum(axis=1), "force": rng.normal(size=(nf, nloc, 3)),
        "virial": rng.normal(0, 3, (nf, 9)), "mask": mask, "force_mag": rng.normal(size=(nf, nloc, 3)),
        "mask_mag": np.broadcast_to(np.asarray(mag, bool)[None, :nloc, None], (nf, nloc, 1)).copy(),
    }
    labels = {
        "energy": out["energy"] + rng.normal(0, 2.0, (nf, 1)),
        "force": out["force"] + rng.normal(0, 1.0, (nf, nloc, 3)) * rng.uniform(0.05, 2, (nf, nloc, 1)),
        "virial": out["virial"] + rng.normal(0, 3, (nf, 9)),
        "atom_ener": rng.normal(-1.0, 0.5, (nf, nloc)),
        "atom_pref": rng.uniform(0.5, 2.0, (nf, nloc)),
        "atom_ener_coeff": rng.choice([-1.0, 1.0, 2.0], (nf, nloc)),
        "drdq": rng.normal(size=(nf, nloc * 3 * ngc)),
        "force_mag": out["force_mag"] + rng.normal(size=(nf, nloc, 3)),
    }
    for k in DEFAULT_FILL:
        labels[f"find_{k}"] = 1.0
    for k in missing:
        labels[k] = np.full_like(labels[k], DEFAULT_FILL[k])
        labels[f"find_{k}"] = 0.0
    return out, labels


# the prefactors of the option matrices and the framework cases
BASE_PREFS = {"start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000, "limit_pref_f": 1.0,
              "start_pref_v": 0.0, "limit_pref_v": 1.0,  # OR rule: start 0, limit 1 is active
              "start_pref_ae": 1.0, "limit_pref_ae": 0.0}


def assert_matches(got, want, tol=TOL["float64"]):
    """Two (loss, metrics) results agree to ``tol`` (relative), with the same metric keys and NaNs."""
    loss, met = got
    wloss, wmet = want
    assert set(met) == set(wmet), (sorted(met), sorted(wmet))
    assert abs(float(loss) - wloss) <= tol * max(abs(wloss), 1e-300), (float(loss), wloss)
    for k, v in wmet.items():
        g = float(met[k])
        if math.isnan(v):
            assert math.isnan(g), k
        else:
            assert abs(g - v) <= tol * max(abs(v), 1e-300), (k, g, v)
