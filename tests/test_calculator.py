"""dpcore.calculator.DP, the ASE calculator: derivatives against ASE's finite differences, equality with
``model.evaluate`` on every backend (frameworks in their own processes), NVE energy conservation, periodic,
slab and cluster systems, caching, and the errors for bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ase")

from ase import Atoms, units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.calculators.calculator import PropertyNotImplementedError  # noqa: E402
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress  # noqa: E402

import dpcore  # noqa: E402
from dpcore.calculator import DP  # noqa: E402
from dpcore.conformance.tolerances import TOLERANCES  # noqa: E402

TOL = TOLERANCES["float64"]  # every model here is float64
# ASE's central differences, step 1e-4 (Å, strain, μB): truncation h^2/6 |E'''| ~ 1e-9 |E'''| dominates
# (round-off eps |E| / h ~ 1e-11). 1e-6 of the largest component keeps a 10-100x margin on these smooth
# models, while a wrong sign, convention or missing term is an O(1) error.
FD_STEP, FD_REL_TOL = 1e-4, 1e-6
SUBPROCESS_BACKENDS = ["array_api_strict", "torch", "jax", "tensorflow", "paddle"]  # numpy: in-process tests

DESCRIPTOR = {"type": "se_e2_a", "sel": [30, 30], "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8],
              "axis_neuron": 4, "seed": 1}


def small_model(type_map=("Cu", "Au"), spin=None, **fitting):
    """A small float64 model with random networks and non-trivial statistics (davg, dstd, out_bias,
    fparam/aparam), so that every term of the energy shows in the derivatives. dstd 0.1-0.3 (the size of
    trained models' radial statistics) and a 10x last fitting layer give forces of ~0.3 eV/Å rms on the test
    cells, like a trained metal potential (fresh networks alone give ~1e-3 eV/Å: a nearly free gas)."""
    section = {"type_map": list(type_map), "descriptor": dict(DESCRIPTOR),
               "fitting_net": {"neuron": [8, 8], "seed": 1, **fitting}}
    if spin is not None:
        section["spin"] = spin
    model = dpcore.model_from_config(section, seed=1)
    params, rng = model.params, np.random.default_rng(2)
    d = params["descriptor"]
    nt, nnei, _ = d["davg"].shape
    d["davg"] = np.zeros((nt, nnei, 4))
    d["davg"][..., 0] = rng.normal(0.3, 0.1, (nt, 1))
    d["dstd"] = np.repeat(rng.uniform(0.1, 0.3, (nt, 1, 2)), nnei, axis=1)[..., [0, 1, 1, 1]]
    params["out_bias"] = rng.normal(-1.0, 0.5, params["out_bias"].shape)
    f = params["fitting"]
    for net in f["nets"].values():
        last = net[max(net, key=int)]
        last["w"] = 10.0 * last["w"]
    for k in ("fparam", "aparam"):
        if f"{k}_avg" in f:
            f[f"{k}_avg"] = rng.normal(0.0, 1.0, f[f"{k}_avg"].shape)
            f[f"{k}_inv_std"] = rng.uniform(0.5, 2.0, f[f"{k}_inv_std"].shape)
    model.set_params(params)  # drops cached backend copies
    return model


def spin_model():
    return small_model(("Fe", "Al"), spin={"use_spin": [True, False], "virtual_scale": [0.3]})


def cuau(seed=0, rattle=0.1):
    """27-atom triclinic (primitive fcc 3x3x3) Cu-Au cell, rattled."""
    atoms = bulk("Cu", "fcc", a=3.7).repeat((3, 3, 3))
    atoms.symbols[np.random.default_rng(seed).choice(len(atoms), 7, replace=False)] = "Au"
    atoms.rattle(rattle, seed=seed)
    return atoms


def feal(seed=0):
    """16-atom B2 Fe-Al cell, rattled, random non-collinear Fe moments (μB), none on Al."""
    rng = np.random.default_rng(seed)
    atoms = bulk("FeAl", "cesiumchloride", a=2.87, cubic=True).repeat((2, 2, 2))
    atoms.set_initial_magnetic_moments(None)
    atoms.rattle(0.08, seed=seed)
    moments = rng.normal(size=(len(atoms), 3))
    moments *= rng.uniform(1.6, 2.8, (len(atoms), 1)) / np.linalg.norm(moments, axis=1, keepdims=True)
    moments[atoms.symbols == "Al"] = 0.0
    atoms.set_initial_magnetic_moments(moments)
    return atoms


def rel(x, ref) -> float:
    """max |x - ref| / max |ref| (the tolerance table's measure)."""
    return float(np.max(np.abs(np.asarray(x) - ref)) / np.max(np.abs(ref)))


# ------------------------------------------------------------------------------------------- derivatives
def slab():
    atoms = cuau(seed=1)
    atoms.pbc = [True, True, False]  # the third cell vector is now vacuum-free: images across it must be absent
    return atoms


@pytest.mark.parametrize("make", [cuau, slab], ids=["periodic", "slab"])
def test_forces_and_stress_match_ase_finite_differences(make):
    atoms = make()
    atoms.calc = DP(small_model())
    forces, stress = atoms.get_forces(), atoms.get_stress()
    assert rel(forces, calculate_numerical_forces(atoms, FD_STEP)) < FD_REL_TOL
    assert rel(stress, calculate_numerical_stress(atoms, FD_STEP)) < FD_REL_TOL
    assert np.abs(stress).max() > 1e-3 and np.abs(forces).max() > 0.1  # not a trivially flat model


def test_cluster_forces_and_no_stress():
    atoms = cuau(seed=2)
    atoms.pbc = False
    atoms.calc = DP(small_model())
    assert rel(atoms.get_forces(), calculate_numerical_forces(atoms, FD_STEP)) < FD_REL_TOL
    with pytest.raises(PropertyNotImplementedError, match="not periodic"):
        atoms.get_stress()
    assert atoms.calc.get_virial().shape == (3, 3)  # the virial of a cluster is defined


def test_slab_equals_the_same_slab_in_a_periodic_cell_with_vacuum():
    """Mixed pbc adds no images across the non-periodic direction: same as a fully periodic cell whose
    vacuum exceeds rcut."""
    atoms = slab()
    atoms.calc = DP(small_model())
    boxed = atoms.copy()
    boxed.pbc = True
    boxed.center(vacuum=6.0, axis=2)  # > rcut = 4 Å of vacuum; centring shifts the atoms along z only
    boxed.calc = DP(small_model())
    assert rel(boxed.get_potential_energies(), atoms.get_potential_energies()) < TOL
    assert rel(boxed.get_forces(), atoms.get_forces()) < TOL
    assert rel(boxed.calc.get_virial(), atoms.calc.get_virial()) < TOL


def test_magnetic_forces_match_finite_differences_in_the_spins():
    atoms = feal()
    atoms.calc = DP(spin_model())
    fm = atoms.calc.get_magnetic_forces(atoms)
    assert rel(atoms.get_forces(), calculate_numerical_forces(atoms, FD_STEP)) < FD_REL_TOL
    assert rel(atoms.get_stress(), calculate_numerical_stress(atoms, FD_STEP)) < FD_REL_TOL  # spins held fixed
    moments = atoms.get_initial_magnetic_moments()
    fd = np.zeros_like(moments)
    for i in np.flatnonzero(atoms.symbols == "Fe"):
        for k in range(3):
            energy = []
            for sign in (1, -1):
                m = moments.copy()
                m[i, k] += sign * FD_STEP
                atoms.set_initial_magnetic_moments(m)
                energy.append(atoms.get_potential_energy())
            fd[i, k] = -(energy[0] - energy[1]) / (2 * FD_STEP)
    assert rel(fm, fd) < FD_REL_TOL
    assert np.all(fm[atoms.symbols == "Al"] == 0.0)
    assert np.abs(fm).max() > 1e-2


# ------------------------------------------------------------------------------------------- conventions
def test_results_are_model_evaluate_in_ase_conventions():
    model = small_model()
    atoms = cuau()
    atoms.calc = DP(model)
    out = model.evaluate(atoms.positions[None], atoms.calc.atom_types(atoms), atoms.cell[:].reshape(1, 9))
    virial = out["virial"][0].reshape(3, 3)
    assert atoms.get_potential_energy() == out["energy"][0, 0] == atoms.get_potential_energy(force_consistent=True)
    np.testing.assert_array_equal(atoms.get_forces(), out["force"][0])
    np.testing.assert_array_equal(atoms.get_potential_energies(), out["atom_energy"][0, :, 0])
    np.testing.assert_array_equal(atoms.calc.get_virial(), virial)
    sigma = -0.5 * (virial + virial.T) / atoms.get_volume()  # ASE: positive under tension, eV/Å^3
    np.testing.assert_allclose(atoms.get_stress(), sigma[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], rtol=0, atol=1e-15)
    assert atoms.calc.atom_types(atoms).tolist() == [model.type_map.index(s) for s in atoms.get_chemical_symbols()]


def test_one_model_call_per_configuration_and_fparam_aparam_changes_are_seen():
    model = small_model(numb_fparam=1, numb_aparam=1)
    calls = []
    evaluate = model.evaluate
    model.evaluate = lambda *a, **kw: calls.append(1) or evaluate(*a, **kw)
    atoms = cuau()
    atoms.info["fparam"] = [0.3]
    atoms.set_array("aparam", np.linspace(0.0, 1.0, len(atoms)))
    atoms.calc = calc = DP(model)
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(), calc.get_virial()
    assert len(calls) == 1
    e0 = atoms.get_potential_energy()
    atoms.info["fparam"] = [0.9]  # ASE itself does not track atoms.info
    assert atoms.get_potential_energy() != e0 and len(calls) == 2
    atoms.arrays["aparam"][0] += 0.5
    assert atoms.get_potential_energy() != e0 and len(calls) == 3
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert len(calls) == 4


def test_default_fparam_is_used_when_atoms_give_none():
    model = small_model(numb_fparam=1, default_fparam=[0.7])
    atoms = cuau()
    atoms.calc = DP(model)
    e_default = atoms.get_potential_energy()
    explicit = atoms.copy()
    explicit.info["fparam"] = [0.7]
    explicit.calc = DP(model)
    assert e_default == explicit.get_potential_energy()


def test_model_from_a_file_a_checkpoint_folder_and_a_type_dict(tmp_path):
    from dpcore.train.checkpoint import write_checkpoint

    model = small_model()
    model.save(tmp_path / "m.dp")
    write_checkpoint(tmp_path / "run", "model.ckpt", {"config": {"model": model.config}, "params": model.params,
                                                      "step": 3})
    atoms = cuau()
    energies = []
    for source in (model, tmp_path / "m.dp", str(tmp_path / "run"), tmp_path / "run" / "model.ckpt"):
        atoms.calc = DP(source)
        energies.append(atoms.get_potential_energy())
    assert max(energies) - min(energies) <= TOL * abs(energies[0])
    swapped = atoms.copy()  # type_dict: Ag atoms are the model's type 0 ("Cu")
    swapped.symbols[swapped.symbols == "Cu"] = "Ag"
    swapped.calc = DP(model, type_dict={"Ag": 0, "Au": 1})
    assert swapped.get_potential_energy() == energies[0]
    with pytest.raises(FileNotFoundError, match="neither a model file"):
        DP(tmp_path / "nothing_here")


# ------------------------------------------------------------------------------------------- bad inputs
def test_unknown_element_is_named_with_the_type_map():
    atoms = cuau()
    atoms.symbols[4] = "Ag"
    atoms.calc = DP(small_model())
    with pytest.raises(ValueError, match=r"element 'Ag' \(atom 4\) is not in the model's type_map \['Cu', 'Au'\]"):
        atoms.get_potential_energy()


def test_spin_model_needs_non_collinear_moments():
    atoms = feal()
    atoms.set_initial_magnetic_moments(None)
    atoms.calc = DP(spin_model())
    with pytest.raises(ValueError, match=r"spin model \(magnetic types \['Fe'\]\): set the magnetic moments"):
        atoms.get_potential_energy()
    atoms.set_initial_magnetic_moments(np.full(len(atoms), 2.2))
    with pytest.raises(ValueError, match=r"non-collinear magnetic moments of shape \(16, 3\).*got shape \(16,\) "
                                         r"\(collinear"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("info, arrays, message", [
    ({}, {"aparam": np.zeros(27)}, r"needs 1 frame parameter\(s\) and has no default_fparam"),
    ({"fparam": [1.0, 2.0]}, {"aparam": np.zeros(27)}, r"fparam'\] has shape \(2,\); the model needs numb_fparam = 1"),
    ({"fparam": [1.0]}, {}, r"needs 1 atomic parameter\(s\) per atom"),
    ({"fparam": [1.0]}, {"aparam": np.zeros((27, 2))}, r"aparam'\] has shape \(27, 2\); the model needs numb_aparam = 1"),
])
def test_fparam_and_aparam_errors(info, arrays, message):
    atoms = cuau()
    atoms.info.update(info)
    for k, v in arrays.items():
        atoms.set_array(k, v)
    atoms.calc = DP(small_model(numb_fparam=1, numb_aparam=1))
    with pytest.raises(ValueError, match=message):
        atoms.get_potential_energy()


def test_parameters_given_to_a_model_without_them_and_bad_cells():
    atoms = cuau()
    atoms.info["fparam"] = [1.0]
    atoms.calc = DP(small_model())
    with pytest.raises(ValueError, match="takes no frame parameters"):
        atoms.get_potential_energy()
    flat = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[5.0, 5.0, 0.0], pbc=True)
    flat.calc = DP(small_model())
    with pytest.raises(ValueError, match=r"pbc\[2\] is True but cell vector 2 is zero"):
        flat.get_potential_energy()
    flat.pbc = [True, True, False]  # a 2-d periodic layer: energy and forces, but no volume for a stress
    assert np.isfinite(flat.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError, match="rank 2"):
        flat.get_stress()


# ------------------------------------------------------------------------------------------- NVE
def nve_energy_error(dt_fs: float, duration_fs: float) -> np.ndarray:
    """E_total(t) - E_total(0) per atom (eV) at every step of velocity Verlet on the small model, 300 K start."""
    from ase.md.verlet import VelocityVerlet

    atoms = cuau(seed=3, rattle=0.0)
    atoms.calc = DP(small_model())
    rng = np.random.default_rng(3)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(atoms.get_masses()[:, None] * units.kB * 300.0))
    dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs)
    etot = []
    dyn.attach(lambda: etot.append(atoms.get_total_energy()), interval=1)
    dyn.run(round(duration_fs / dt_fs))
    return (np.array(etot) - etot[0]) / len(atoms)


def test_nve_conserves_energy_with_second_order_error():
    """Velocity Verlet is symplectic: with forces = -grad E the energy error stays bounded (no drift) and
    scales as dt^2, so halving dt divides it by ~4. Forces inconsistent with the energy (a wrong term or
    sign) give an error that does not shrink with dt; a non-smooth energy (a neighbour jumping at rcut) a
    jump that does not either, and a drift."""
    coarse, fine = nve_energy_error(2.0, 400.0), nve_energy_error(1.0, 400.0)
    ratio = np.abs(coarse).max() / np.abs(fine).max()
    assert 3.0 < ratio < 5.0, (np.abs(coarse).max(), np.abs(fine).max())  # measured 4.0
    kT = units.kB * 300.0  # 0.026 eV
    assert np.abs(coarse).max() < 1e-3 * kT  # eV/atom at dt = 2 fs; measured 6.6e-6 (forces ~0.3 eV/Å rms)
    drift = np.polyfit(np.arange(len(coarse)) * 2e-3, coarse, 1)[0]  # eV/atom/ps
    assert abs(drift) < 1e-4 * kT  # per ps; the bounded dt^2 oscillation alone gives ~1e-7


# ------------------------------------------------------------------------------------------- every backend
_WORKER = r"""
import json, sys
import numpy as np
from ase import Atoms
import dpcore
from dpcore.calculator import DP
from pathlib import Path

backend, work = sys.argv[1], Path(sys.argv[2])
compiles = []
if backend == "jax":
    import jax.monitoring
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *a, **k: compiles.append(name) if name.endswith("backend_compile_duration") else None)
report = {}
for kind in ("energy", "spin"):
    model = dpcore.load(work / f"{kind}.dp")
    s = np.load(work / f"{kind}.npz")
    atoms = Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=True)
    if kind == "spin":
        atoms.set_initial_magnetic_moments(s["magmoms"])
    else:
        atoms.info["fparam"] = s["fparam"]
        atoms.set_array("aparam", s["aparam"])
    calc = DP(model, backend=backend)
    atoms.calc = calc
    n0 = len(compiles)
    props = ["energy", "energies", "forces", "virial"] + (["magnetic_forces"] if kind == "spin" else [])
    got = {p: np.asarray(calc.get_property(p, atoms)) for p in props}
    args = [atoms.positions[None], calc.atom_types(atoms)]
    args += [s["magmoms"][None]] if kind == "spin" else []
    kw = {} if kind == "spin" else {"fparam": s["fparam"][None], "aparam": s["aparam"][None]}
    errs = {}
    for ref_backend in (backend, "numpy"):
        out = model.evaluate(*args, atoms.cell[:].reshape(1, 9), backend=ref_backend, **kw)
        ref = {"energy": out["energy"][0, 0], "energies": out["atom_energy"][0, :, 0], "forces": out["force"][0],
               "virial": out["virial"][0].reshape(3, 3), "magnetic_forces": out.get("force_mag", [None])[0]}
        errs[ref_backend] = {p: float(np.max(np.abs(got[p] - ref[p])) / np.max(np.abs(ref[p]))) for p in props}
    n = len(compiles)
    for seed in range(3):  # moved atoms, same size: nothing is compiled again
        atoms.rattle(0.05, seed=seed)
        atoms.get_forces()
    report[kind] = {"vs_same_backend": errs[backend], "vs_numpy": errs["numpy"], "compiles_first": n - n0,
                    "compiles_after_first": len(compiles) - n}
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def backend_runs(tmp_path_factory):
    """Launch one process per framework at once (paddle crashes after tensorflow in one process)."""
    work = tmp_path_factory.mktemp("calc_backends")
    small_model(numb_fparam=1, numb_aparam=1).save(work / "energy.dp")
    spin_model().save(work / "spin.dp")
    atoms = cuau()
    np.savez(work / "energy.npz", numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell[:],
             fparam=np.array([0.4]), aparam=np.linspace(-1.0, 1.0, len(atoms)))
    atoms = feal()
    np.savez(work / "spin.npz", numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell[:],
             magmoms=atoms.get_initial_magnetic_moments())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent),
                                                         os.environ.get("PYTHONPATH", "")])}
    return {b: subprocess.Popen([sys.executable, "-c", _WORKER, b, str(work)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env) for b in SUBPROCESS_BACKENDS}


@pytest.mark.parametrize("backend", SUBPROCESS_BACKENDS)
def test_calculator_equals_model_evaluate_on_every_backend(backend, backend_runs):
    proc = backend_runs[backend]
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    for kind, r in report.items():
        for ref in ("vs_same_backend", "vs_numpy"):
            assert max(r[ref].values()) <= TOL, (kind, ref, r[ref])
        # jax compiles once per system size (counted with jax.monitoring; the other backends run eagerly)
        assert r["compiles_after_first"] == 0, (kind, r)
        assert (r["compiles_first"] > 0) == (backend == "jax"), (kind, r)  # the counter does see compiles
