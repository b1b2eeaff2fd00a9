"""DPA-1 energy models (SPEC_DPA1 7-10): DeePMD-kit's energies, forces and virials on its own files, save/load
round trips, the shipped physics checks on fresh models, and DeePMD-kit evaluating dpcore-written files.

Needs the mixed-type energy fitting (one net for all types, ``"mixed_types": true``, SPEC_DPA1 7) and the
first-atom padding type of the inference inputs (SPEC_DPA1 0.2)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import TOL, random_system, rel_err
from helpers.deepmd_kit import requires_deepmd_kit, run

import dpcore
from dpcore.conformance.checks import run_checks
from dpcore.descriptor.dpa1_config import DPA1Warning

EXAMPLES = Path(__file__).parent / "fixtures" / "dpa1" / "spec_examples"  # SPEC_DPA1 10, made by DeePMD-kit 3.2.0
OUTPUTS = ("energy", "atom_energy", "force", "virial", "atom_virial")
DPKIT_TOL = 1e-10  # DeePMD-kit's PyTorch graph against dpcore's NumPy reference (as tests/test_deepmd_kit_backends.py)


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DPA1Warning)
        return dpcore.load(path)


def _example(name):
    ref = json.loads((EXAMPLES / f"{name}.json").read_text())
    return ref, _load(EXAMPLES / f"{name}.yaml"), np.array(ref["coord"])[None], np.array(ref["atype"])


def _compare(out, ref, tol):
    for key in OUTPUTS:
        want = np.asarray(ref[key], dtype=np.float64)
        assert rel_err(np.asarray(out[key]).reshape(want.shape), want) <= tol, key


@pytest.mark.parametrize("name", ["dpa1_tiny", "se_atten_v2_tiny"])
def test_deepmd_kit_files_give_deepmd_kits_numbers(name):
    ref, model, coord, atype = _example(name)
    _compare(model.evaluate(coord, atype, None, atomic=True), ref, TOL["float64"])
    perm = ref["permutation_check"]["perm"]  # padding typed as the first atom (SPEC_DPA1 0.2): order matters
    swapped = model.evaluate(coord[:, perm], atype[perm], None)["energy"].item()
    assert abs(swapped - ref["permutation_check"]["energy"]) <= TOL["float64"] * abs(ref["energy"])


def test_loading_warns_about_deepmd_kit_behaviour():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dpcore.load(EXAMPLES / "dpa1_tiny.yaml")
    text = " ".join(str(w.message) for w in caught if issubclass(w.category, DPA1Warning))
    assert "first atom" in text and "not continuous at rcut" in text


@pytest.mark.parametrize("name", ["dpa1_tiny", "se_atten_v2_tiny"])
@pytest.mark.parametrize("suffix", ["dp", "yaml"])
def test_save_and_load_round_trip(tmp_path, name, suffix):
    ref, model, coord, atype = _example(name)
    model.save(tmp_path / f"m.{suffix}")
    again = _load(tmp_path / f"m.{suffix}")
    a, b = model.to_dict(), again.to_dict()
    assert a["descriptor"]["type"] == b["descriptor"]["type"] and a["fitting"]["mixed_types"] is True
    for key in ("davg", "dstd"):
        assert np.array_equal(a["descriptor"]["@variables"][key], b["descriptor"]["@variables"][key])
    _compare(again.evaluate(coord, atype, None, atomic=True), ref, TOL["float64"])


CONFIGS = {  # fresh models: smooth ones pass every check; non-smooth ones depend on the first atom's type
    "dpa1_smooth": {"type": "dpa1", "smooth_type_embedding": True, "set_davg_zero": True},
    "dpa1_concat": {"type": "se_atten", "set_davg_zero": False, "exclude_types": [[0, 1]]},
    "v2": {"type": "se_atten_v2", "type_one_side": True},
    "v2_excl": {"type": "se_atten_v2", "attn_layer": 0, "set_davg_zero": True, "exclude_types": [[1, 1]]},
}


def _fresh(name, seed=1):
    d = {"sel": 80, "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 3, "attn": 6, "attn_layer": 2,
         "tebd_dim": 3, "seed": seed, **CONFIGS[name]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DPA1Warning)
        model = dpcore.model_from_config({"type_map": ["O", "H", "C"], "descriptor": d,
                                          "fitting_net": {"neuron": [8, 8], "seed": seed + 1}})
    rng = np.random.default_rng(seed + 2)
    p = model.params["descriptor"]
    nt, nnei, _ = p["davg"].shape
    if not model.config["descriptor"]["set_davg_zero"]:
        p["davg"][..., 0] = rng.normal(0.3, 0.1, (nt, 1))
    p["dstd"][:] = np.repeat(rng.uniform(0.1, 0.3, (nt, 1, 2)), nnei, axis=1)[..., [0, 1, 1, 1]]  # large forces
    model.set_params(model.params)  # out_bias 0: forces are small, the finite differences' round-off floor ~ sum |e_i|
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
def test_physics_checks_on_fresh_models(name):
    model = _fresh(name)
    smooth = name != "dpa1_concat"
    checks = ["finite_differences", "translation", "rotation", "periodic_images", "batch"]
    checks += ["permutation", "smoothness"] if smooth else []
    results = run_checks(model, "numpy", checks=checks, systems=("pbc_triclinic", "cluster"))
    failed = [(r.name, r.output, r.system, r.error, r.tol) for r in results if not r.passed]
    assert not failed, failed


def test_non_smooth_model_depends_on_the_first_atom_only_through_padding():
    """dpa1 concat with davg != 0: reordering atoms of the same type as the first atom keeps the energy."""
    model = _fresh("dpa1_concat")
    coord, atype, box = random_system(natoms=9, nframes=1, ntypes=3, box_len=5.0, seed=3)
    e = model.evaluate(coord, atype, box)["energy"]
    same = [i for i in range(1, 9) if atype[i] == atype[0]]
    perm = list(range(9))
    perm[1], perm[same[0]] = perm[same[0]], perm[1]
    assert rel_err(model.evaluate(coord[:, perm], atype[perm], box)["energy"], e) <= TOL["float64"]
    other = next(i for i in range(9) if atype[i] != atype[0])
    perm = [other] + [i for i in range(9) if i != other]
    assert rel_err(model.evaluate(coord[:, perm], atype[perm], box)["energy"], e) > 1e-8


EVAL = """
import sys, numpy as np
from deepmd.infer import DeepPot
model, inp, out = sys.argv[1:4]
d = np.load(inp, allow_pickle=True)
box = None if d["box"].ndim == 0 else d["box"]
res = DeepPot(model).eval(d["coord"], box, d["atype"], atomic=True)
np.savez(out, **dict(zip(["energy", "force", "virial", "atom_energy", "atom_virial"], map(np.asarray, res))))
"""


def _deepmd_kit_eval(tmp_path, model, coord, atype, box) -> dict:
    model.save(tmp_path / "model.dp")
    proc = run(["dp", "convert-backend", tmp_path / "model.dp", tmp_path / "model.pth"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    np.savez(tmp_path / "in.npz", coord=coord.reshape(coord.shape[0], -1), atype=atype,
             box=np.array(None) if box is None else box)
    (tmp_path / "eval.py").write_text(EVAL)
    proc = run(["python", tmp_path / "eval.py", tmp_path / "model.pth", tmp_path / "in.npz", tmp_path / "out.npz"],
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(np.load(tmp_path / "out.npz"))


@requires_deepmd_kit
@pytest.mark.parametrize("name", ["dpa1_concat", "v2_excl"])
def test_deepmd_kit_reads_dpcore_files(tmp_path, name):
    model = _fresh(name)
    coord, atype, box = random_system(natoms=10, nframes=2, ntypes=3, box_len=5.0, seed=4)
    got = _deepmd_kit_eval(tmp_path, model, coord, atype, box)
    _compare(got, model.evaluate(coord, atype, box, atomic=True), DPKIT_TOL)


@requires_deepmd_kit
def test_deepmd_kit_reads_the_resaved_spec_example(tmp_path):
    ref, model, coord, atype = _example("dpa1_tiny")
    _compare(_deepmd_kit_eval(tmp_path, model, coord, atype, None), ref, DPKIT_TOL)
