"""dpcore-written model files through DeePMD-kit's ``dp convert-backend`` to the files LAMMPS loads
(``.pth`` for PyTorch, ``.pb`` for TensorFlow), evaluated by DeePMD-kit: the same numbers as dpcore."""

import numpy as np
import pytest

from helpers import TOL, make_model, random_system
from helpers.deepmd_kit import requires_deepmd_kit, run
from helpers.spin import make_spin_model, spin_system

EVAL = """
import sys, numpy as np
from deepmd.infer import DeepPot
model, inp, out = sys.argv[1:4]
d = np.load(inp)
kw = {"spin": d["spin"]} if "spin" in d.files else {}
res = DeepPot(model).eval(d["coord"], d["box"], d["atype"], atomic=True, **kw)
names = ["energy", "force", "virial", "atom_energy", "atom_virial"] + (["force_mag"] if kw else [])
np.savez(out, **{n: np.asarray(r) for n, r in zip(names, res)})
"""

# 1e-10 relative (float64 models): DeePMD-kit's PyTorch/TensorFlow graphs against dpcore's NumPy reference
DPKIT_TOL = 1e-10


def _convert_and_eval(tmp_path, model, inputs: dict, suffix: str) -> dict:
    src = tmp_path / "model.dp"
    model.save(src)
    proc = run(["dp", "convert-backend", src, tmp_path / f"model.{suffix}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    np.savez(tmp_path / "in.npz", **inputs)
    (tmp_path / "eval.py").write_text(EVAL)
    proc = run(["python", tmp_path / "eval.py", tmp_path / f"model.{suffix}", tmp_path / "in.npz",
                tmp_path / "out.npz"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(np.load(tmp_path / "out.npz"))


def _compare(got: dict, ref: dict) -> None:
    for key, value in got.items():
        r = ref[key]
        err = np.abs(value.reshape(r.shape) - r).max() / max(np.abs(r).max(), 1e-300)
        assert err <= DPKIT_TOL, f"{key}: relative error {err:.2e} > {DPKIT_TOL}"
    assert DPKIT_TOL >= TOL["float64"]


@requires_deepmd_kit
@pytest.mark.parametrize("suffix", ["pth", "pb"])
def test_energy_model_converted_by_deepmd_kit_gives_dpcores_numbers(tmp_path, suffix):
    model = make_model(seed=3)
    coord, atype, box = random_system(natoms=12, nframes=2, seed=4)
    ref = model.evaluate(coord, atype, box, atomic=True)
    got = _convert_and_eval(tmp_path, model, {"coord": coord.reshape(2, -1), "atype": atype, "box": box}, suffix)
    _compare(got, ref)


@requires_deepmd_kit
def test_spin_model_converted_to_pytorch_gives_dpcores_numbers(tmp_path):
    """DeePMD-kit's TensorFlow backend cannot load a serialized spin_ener model ("Unknown model type:
    spin_ener"), so a spin model goes to LAMMPS through .pth only."""
    model = make_spin_model()
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    ref = model.evaluate(coord, atype, spin, box, atomic=True)
    nf = coord.shape[0]
    got = _convert_and_eval(tmp_path, model, {"coord": coord.reshape(nf, -1), "atype": atype, "box": box,
                                              "spin": spin.reshape(nf, -1)}, "pth")
    _compare(got, ref)
