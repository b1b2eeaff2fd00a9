"""Physics of the NumPy reference through the shipped checks (dpcore.conformance.checks): derivatives,
invariances, smoothness, periodic images, supercells, batches; the checks fail on deliberately broken models;
and the properties the checks do not cover (vacuum box, per-frame types and padding, precision, sel overflow)."""

import copy
import warnings

import numpy as np
import pytest

from helpers import random_fparam_aparam, TOL, make_model, random_system

from dpcore.conformance import cases as C
from dpcore.conformance import checks
from dpcore.conformance.checks import assert_passed
from dpcore.conformance.tolerances import INVARIANCE_TOLERANCES

MODELS = {
    "two_side": {},
    "one_side": {"descriptor": {"type_one_side": True}},
    "exclude": {"descriptor": {"exclude_types": [[0, 1]]}},
    "fparam_aparam": {"fitting": {"numb_fparam": 2, "numb_aparam": 1}},
    "resnet_gelu": {"descriptor": {"neuron": [2, 4, 8], "resnet_dt": True, "activation_function": "gelu"},
                    "fitting": {"neuron": [16, 32], "activation_function": "silu"}},
    "softplus_protect": {"descriptor": {"activation_function": "softplus", "env_protection": 0.1},
                         "fitting": {"activation_function": "relu6"}},
    "atom_excl_vacuum": {"descriptor": {"set_davg_zero": True}, "fitting": {"atom_ener": [1.0, None]},
                         "atom_exclude_types": [1], "pair_exclude_types": [[1, 1]]},
}
SYSTEMS = {
    "pbc_triclinic": dict(natoms=12, box_len=5.0),
    "small_box": dict(natoms=3, box_len=2.6, min_dist=0.8),  # several image shells for rcut 4
    "cluster": dict(natoms=10, box_len=4.5),
}


def _system(model, name, nframes=2, seed=0) -> dict:
    """A system dict for the checks: coord, atype, box (None for the cluster), fparam / aparam the model needs."""
    coord, atype, box = random_system(nframes=nframes, seed=seed, **SYSTEMS[name])
    fparam, aparam = random_fparam_aparam(model, *coord.shape[:2])
    return {"name": name, "coord": coord, "atype": atype, "box": None if name == "cluster" else box,
            "fparam": fparam, "aparam": aparam}


def _catalogue_model(name):
    return C.build_model(C.model_spec(name))


# ------------------------------------------------------------------------------------------------ checks pass
@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("model_name", MODELS)
def test_forces_and_virial_match_finite_differences(model_name, system):
    model = make_model(**MODELS[model_name])
    model.params["out_bias"][:] = 0.0  # a constant offset only adds round-off to the differences
    results = checks.check_finite_differences(model, _system(model, system, seed=35))  # steps >= 4.5e-4 Å
    assert_passed(results)
    assert {(r.name, r.output) for r in results} == {("finite_differences", "force"), ("finite_differences", "virial"),
                                                    ("sum_rules", "atom_energy"), ("sum_rules", "atom_virial")}
    assert all(r.tol == TOL["float64"] for r in results if r.name == "sum_rules")


@pytest.mark.parametrize("system", SYSTEMS)
def test_translation_rotation_permutation_invariance(system):
    model = make_model(**MODELS["fparam_aparam"])
    s = _system(model, system, nframes=1)
    results = [r for check in (checks.check_translation, checks.check_rotation, checks.check_permutation)
               for r in check(model, s)]
    assert_passed(results)
    assert {r.output for r in results} == {"energy", "atom_energy", "force", "virial", "atom_virial"}


@pytest.mark.parametrize("system", ["pbc_triclinic", "small_box"])
def test_wrapping_by_lattice_vectors(system):
    model = make_model()
    assert_passed(checks.check_periodic_images(model, _system(model, system, nframes=1)))


def test_small_cell_equals_supercell():
    """A cell smaller than rcut (several image shells) and its 2x2x2 supercell give the same energy per atom."""
    model = make_model(descriptor={"sel": [48, 48]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sel overflow in the supercell
        results = checks.check_supercell(model, _system(model, "small_box", nframes=1))
    assert_passed(results)
    assert {"energy / 8", "virial / 8", "force"} <= {r.output for r in results}


def test_energy_is_smooth_when_a_neighbour_crosses_rcut():
    results = checks.check_smoothness(make_model())
    assert_passed(results)
    assert [r.output for r in results] == ["energy (rcut ± 1e-12 Å)", "force (rcut ± 1e-12 Å)", "energy (rcut ± 0.0001 Å)"]


def test_smoothness_skips_the_pairs_of_descriptor_exclude_types():
    """The energy jumps at rcut for excluded pairs by definition (SPEC "Decisions"): the check leaves them out."""
    model = make_model(**MODELS["exclude"])
    results = checks.check_smoothness(model)
    assert_passed(results)
    assert "2 type pairs" in results[0].detail
    cfg = copy.deepcopy(model.config)
    cfg["descriptor"]["exclude_types"] = []  # the same model, but the check now crosses rcut with all 4 pairs
    jumpy = checks.check_smoothness(_Broken(model, lambda out, coord, box: out, config=cfg))
    assert "4 type pairs" in jumpy[0].detail and not jumpy[0].passed


def test_batch_independence():
    model = make_model(**MODELS["fparam_aparam"])
    assert_passed(checks.check_batch(model, _system(model, "pbc_triclinic", nframes=3)))


def test_spin_model_checks():
    """Every check on a spin model (catalogue "spin", small box: several image shells): force_mag included."""
    results = checks.run_checks(_catalogue_model("spin"), systems=["small_box"])
    assert_passed(results)
    fd = {r.output for r in results if r.name == "finite_differences"}
    assert fd == {"force", "virial", "force_mag"}
    assert {r.name for r in results} == set(checks.CHECKS) | {"sum_rules"}


def test_all_checks_on_a_catalogue_model_and_a_model_file(tmp_path):
    results = checks.run_checks(_catalogue_model("two_side"), systems=["pbc_triclinic", "cluster"])
    assert_passed(results)
    assert {r.system for r in results} == {"pbc_triclinic", "cluster", "3-atom cluster"}
    assert not any(r.system == "cluster" and r.name in ("supercell", "periodic_images") for r in results)
    path = tmp_path / "model.yaml"
    make_model().save(path)
    assert_passed(checks.run_checks(str(path), systems=["cluster"], checks=["finite_differences", "rotation"]))


def test_float32_model_checks_use_float32_tolerances():
    model = _catalogue_model("float32")
    results = checks.run_checks(model, systems=["pbc_triclinic"])
    assert_passed(results)
    assert {r.precision for r in results} == {"float32"}
    inv = [r for r in results if r.name == "rotation"]
    assert inv and all(r.tol == INVARIANCE_TOLERANCES["float32"] for r in inv)


# ------------------------------------------------------------------------------------------------ checks can fail
class _Broken:
    """A model whose ``evaluate`` outputs are altered by ``change(out, coord, box)``: everything else delegates."""

    def __init__(self, model, change, config=None):
        self._model, self._change, self._config = model, change, config

    def __getattr__(self, name):
        if name == "config" and self._config is not None:
            return self._config
        return getattr(self._model, name)

    def evaluate(self, coord, atype, *args, **kwargs):
        out = self._model.evaluate(coord, atype, *args, **kwargs)
        box = args[1] if self._model.model_type == "spin_ener" else args[0] if args else kwargs.get("box")
        return self._change(out, np.asarray(coord, dtype=np.float64), box)


def _scale(key, factor=1.01):
    def change(out, coord, box):
        if key in out:  # atom_virial only when atomic=True
            out[key] = out[key] * factor
        return out
    return change


def _add_energy(fn):
    """Add ``fn(coord, box)`` (nf,) eV to the energy (per-atom outputs untouched)."""
    def change(out, coord, box):
        out["energy"] = out["energy"] + fn(coord, box)[:, None]
        return out
    return change


def _pairs_within_rcut(coord, box, rc=4.0):
    d = np.linalg.norm(coord[:, :, None] - coord[:, None], axis=-1)
    return ((d > 0) & (d < rc)).sum(axis=(1, 2)) / 2


BROKEN = {  # name -> (change, check, expected failing (check, output))
    "force x 1.01": (_scale("force"), checks.check_finite_differences, {("finite_differences", "force")}),
    "virial x 1.01": (_scale("virial"), checks.check_finite_differences,
                      {("finite_differences", "virial"), ("sum_rules", "atom_virial")}),
    "atom_virial x 1.01": (_scale("atom_virial"), checks.check_finite_differences, {("sum_rules", "atom_virial")}),
    "translation": (_add_energy(lambda c, b: 1e-6 * c[..., 0].sum(1)), checks.check_translation,
                    {("translation", "energy")}),
    "rotation": (_add_energy(lambda c, b: 1e-6 * ((c[..., 2] - c[..., 2].mean(1, keepdims=True)) ** 2).sum(1)),
                 checks.check_rotation, {("rotation", "energy")}),
    "permutation": (_add_energy(lambda c, b: 1e-6 * c[:, 0, 0]), checks.check_permutation, {("permutation", "energy")}),
    "periodic images": (_add_energy(lambda c, b: 1e-6 * c.sum((1, 2))), checks.check_periodic_images,
                        {("periodic_images", "energy")}),
    "batch": (_add_energy(lambda c, b: np.full(c.shape[0], 1e-6 * c.shape[0])), checks.check_batch, {("batch", "energy")}),
    "supercell": (_add_energy(lambda c, b: np.full(c.shape[0], 1e-6 * c.shape[1] ** 2)), checks.check_supercell,
                  {("supercell", "energy / 8")}),
    "hard cutoff": (_add_energy(lambda c, b: 1e-6 * _pairs_within_rcut(c, b)), checks.check_smoothness,
                    {("smoothness", "energy (rcut ± 1e-12 Å)"), ("smoothness", "energy (rcut ± 0.0001 Å)")}),
}


@pytest.mark.parametrize("name", BROKEN)
def test_checks_fail_on_a_broken_model(name):
    change, check, expected = BROKEN[name]
    model = make_model()
    broken = _Broken(model, change)
    args = () if check is checks.check_smoothness else (_system(model, "pbc_triclinic", seed=35),)
    assert_passed(check(model, *args))  # the intact model passes the same check
    results = check(broken, *args)
    failed = {(r.name, r.output) for r in results if not r.passed}
    assert failed == expected, checks.format_table(results)
    with pytest.raises(AssertionError, match="physics check"):
        assert_passed(results)


def test_finite_difference_check_fails_on_broken_magnetic_forces():
    spin = _catalogue_model("spin")
    results = checks.check_finite_differences(_Broken(spin, _scale("force_mag")), "small_box")
    assert {(r.name, r.output) for r in results if not r.passed} == {("finite_differences", "force_mag")}
    assert 5e-3 < next(r.error for r in results if r.output == "force_mag") < 2e-2


# ------------------------------------------------------------------------------------------------ not in the checks
def test_cluster_in_large_box_equals_non_periodic():
    model = make_model()
    coord, atype, _ = random_system(nframes=1, **SYSTEMS["cluster"])
    box = np.diag([40.0, 41.0, 42.0]).reshape(1, 9)
    a = model.evaluate(coord, atype, None)
    b = model.evaluate(coord + 10.0, atype, box)
    np.testing.assert_allclose(b["energy"], a["energy"], rtol=TOL["float64"])
    np.testing.assert_allclose(b["force"], a["force"], rtol=0, atol=TOL["float64"] * np.abs(a["force"]).max())


def test_frames_with_different_types_and_padding():
    """Per-frame types (no type sorting) and padding atoms (atype -1) give the same numbers as the real atoms alone."""
    model = make_model(descriptor={"type_one_side": False})
    coord, atype, box = random_system(nframes=2, **SYSTEMS["pbc_triclinic"])
    atypes = np.stack([atype, np.roll(atype, 1)])
    batch = model.evaluate(coord, atypes, box, atomic=True)
    for f in range(2):
        one = model.evaluate(coord[f:f + 1], atypes[f], box[f:f + 1], atomic=True)
        np.testing.assert_allclose(batch["energy"][f], one["energy"][0], rtol=TOL["float64"])
        np.testing.assert_allclose(batch["force"][f], one["force"][0], rtol=0, atol=TOL["float64"] * np.abs(one["force"]).max())
    padded_coord = np.concatenate([coord[:1], np.zeros((1, 2, 3))], axis=1)
    padded = model.evaluate(padded_coord, np.concatenate([atypes[0], [-1, -1]])[None], box[:1], atomic=True)
    one = model.evaluate(coord[:1], atypes[0], box[:1], atomic=True)
    np.testing.assert_allclose(padded["energy"], one["energy"], rtol=TOL["float64"])
    np.testing.assert_allclose(padded["force"][:, :-2], one["force"], rtol=0, atol=TOL["float64"] * np.abs(one["force"]).max())
    assert np.all(padded["force"][:, -2:] == 0) and np.all(padded["atom_energy"][:, -2:] == 0)
    assert padded["mask"][0, -2:].tolist() == [0, 0]


def test_float32_agrees_with_float64():
    m64 = make_model()
    m32 = make_model(descriptor={"precision": "float32"}, fitting={"precision": "float32"})
    coord, atype, box = random_system(**SYSTEMS["pbc_triclinic"])
    a, b = m64.evaluate(coord, atype, box), m32.evaluate(coord, atype, box)
    assert b["energy"].dtype == np.float64 and b["virial"].dtype == np.float64
    np.testing.assert_allclose(b["energy"], a["energy"], rtol=TOL["float32"])
    np.testing.assert_allclose(b["force"], a["force"], rtol=0, atol=TOL["float32"] * np.abs(a["force"]).max() * 10)
    np.testing.assert_allclose(b["virial"], a["virial"], rtol=0, atol=TOL["float32"] * np.abs(a["virial"]).max() * 10)


def test_sel_overflow_warns_with_counts():
    from dpcore.nlist import SelOverflowWarning

    model = make_model(descriptor={"sel": [2, 3]})
    coord, atype, box = random_system(nframes=1, **SYSTEMS["pbc_triclinic"])
    with pytest.warns(SelOverflowWarning, match=r"sel\[\d\] = \d"):
        model.evaluate(coord, atype, box)
