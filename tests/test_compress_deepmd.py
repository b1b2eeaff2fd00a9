"""Compressed models both ways with DeePMD-kit 3.2.0: dpcore evaluates DeePMD-kit's ``dp --dp compress`` output
WITH its tables and builds the same tables; DeePMD-kit reads dpcore's compressed files (energies from its tables,
conversion to .pth); dpcore's table evaluation equals DeePMD-kit's C++ kernel, extrapolation included.

The fixtures (tests/fixtures/compress/, made by make_compress_fixtures.py there) need no DeePMD-kit."""

import copy
from pathlib import Path

import numpy as np
import pytest

import dpcore
from dpcore.descriptor.tabulate import compress_model
from dpcore.io import read_model_file
from dpcore.tabulated import tabulated_contraction, tabulated_contraction_vjp, tabulated_net

from helpers import TOL, make_model, random_system
from helpers.deepmd_kit import requires_deepmd_kit, run
from helpers.spin import make_spin_model, spin_system

FIXTURES = Path(__file__).parent / "fixtures" / "compress"
CASES = {"two_side": ".dp", "one_side_float32": ".yaml", "silu_exclusions": ".dp"}
DPKIT_TOL = 1e-10  # DeePMD-kit's evaluation against dpcore's (float64), as in test_deepmd_kit_backends.py


def _tol(model) -> float:
    return TOL[model.config["descriptor"]["precision"]] if model.config["descriptor"]["precision"] == "float32" \
        else TOL["float64"]


def _uncompressed(envelope):
    d = copy.deepcopy(envelope["model"])
    d["descriptor"].pop("compress")
    d["descriptor"]["@version"] = 2
    return dpcore.EnergyModel.from_dict(d)


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# ------------------------------------------------------------------------------------------- DeePMD-kit's files
@pytest.mark.parametrize("name", CASES)
def test_dpcore_evaluates_deepmd_kits_compressed_files_with_their_tables(name):
    path = FIXTURES / f"{name}{CASES[name]}"
    ref = np.load(FIXTURES / f"{name}.npz")
    model = dpcore.load(path)
    assert model.config["descriptor"]["compress"]["info"]
    out = model.evaluate(ref["coord"], ref["atype"], ref["box"], atomic=True)
    tol = _tol(model)
    assert _rel(out["energy"], ref["energy"]) <= tol
    assert _rel(out["atom_energy"], ref["atom_energy"]) <= tol
    # the tables are used: the nets of the same file give (slightly) different numbers
    nets = _uncompressed(read_model_file(path)).evaluate(ref["coord"], ref["atype"], ref["box"])
    assert 0 < _rel(out["force"], nets["force"]) < 1e-3


@pytest.mark.parametrize("name", CASES)
def test_dpcore_builds_deepmd_kits_tables(name):
    """Same knots, derivatives and coefficients: bit for bit with tanh (float64 and float32); silu to rounding."""
    env = read_model_file(FIXTURES / f"{name}{CASES[name]}")
    theirs = env["model"]["descriptor"]["compress"]["@variables"]
    step = {"two_side": 0.05, "one_side_float32": 0.1, "silu_exclusions": 0.1}[name]  # make_compress_fixtures.py
    model = compress_model(_uncompressed(env), float(env["min_nbor_dist"]), step)
    mine = model.to_dict()["descriptor"]["compress"]["@variables"]
    for a, b in zip(mine["compress_info"], theirs["compress_info"]):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    for e, (a, b) in enumerate(zip(mine["compress_data"], theirs["compress_data"])):
        assert a.dtype == b.dtype and a.shape == b.shape
        if model.config["descriptor"]["activation_function"] == "tanh":
            assert np.array_equal(a, b)
        else:  # high-order coefficients amplify the last bit of the net values: compare the polynomials
            info = [float(v) for v in theirs["compress_info"][e]]
            x = np.linspace(info[0], info[2], 20001)[:, None]
            ga = tabulated_net(model.params["descriptor"]["compress"]["table"][str(e)], info, x)[0]
            gb = tabulated_net(dpcore.load(FIXTURES / f"{name}{CASES[name]}").params["descriptor"]["compress"]["table"]
                               [str(e)], info, x)[0]
            assert np.abs(ga - gb).max() <= TOL["float64"] * max(np.abs(gb).max(), 1.0)


# ------------------------------------------------------------------------------------------- dpcore's files
EVAL = """
import sys, numpy as np
from deepmd.infer import DeepPot
model, inp, out = sys.argv[1:4]
d = np.load(inp)
kw = {"spin": d["spin"]} if "spin" in d.files else {}
res = DeepPot(model).eval(d["coord"], d["box"], d["atype"], atomic=True, **kw)
names = ["energy", "force", "virial", "atom_energy", "atom_virial"]
np.savez(out, **{n: np.asarray(r) for n, r in zip(names, res)})
"""


def _deepmd_eval(tmp_path, model_file, inputs: dict) -> dict:
    np.savez(tmp_path / "in.npz", **inputs)
    (tmp_path / "eval.py").write_text(EVAL)
    proc = run(["python", tmp_path / "eval.py", model_file, tmp_path / "in.npz", tmp_path / "out.npz"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(np.load(tmp_path / "out.npz"))


@requires_deepmd_kit
@pytest.mark.parametrize("suffix", [".dp", ".yaml"])
def test_deepmd_kit_evaluates_dpcores_compressed_file_with_its_tables(tmp_path, suffix):
    """A deliberately coarse table (min_nbor_dist 2 Å, extrapolate 2, a 0.25 Å pair): DeePMD-kit's energies are
    dpcore's compressed ones, far from the nets' (so its NumPy backend used dpcore's tables)."""
    model = make_model(seed=3)
    coord, atype, box = random_system(natoms=12, nframes=1, seed=35)
    coord[:, 1] = coord[:, 0] + 0.25 * np.array([0.6, 0.8, 0.0])
    comp = compress_model(copy.deepcopy(model), 2.0, extrapolate=2)
    comp.save(tmp_path / f"c{suffix}")
    got = _deepmd_eval(tmp_path, tmp_path / f"c{suffix}", {"coord": coord.reshape(1, -1), "atype": atype, "box": box})
    mine, nets = comp.evaluate(coord, atype, box, atomic=True), model.evaluate(coord, atype, box)
    assert _rel(got["energy"].reshape(-1), mine["energy"].reshape(-1)) <= DPKIT_TOL
    assert _rel(got["atom_energy"].reshape(-1), mine["atom_energy"].reshape(-1)) <= DPKIT_TOL
    assert _rel(mine["energy"], nets["energy"]) > 1e-6


@requires_deepmd_kit
def test_deepmd_kit_evaluates_dpcores_compressed_spin_model(tmp_path):
    model = compress_model(make_spin_model(), 0.15)
    model.save(tmp_path / "s.dp")
    coord, atype, spin, box = spin_system(model, "pbc_triclinic")
    nf = coord.shape[0]
    got = _deepmd_eval(tmp_path, tmp_path / "s.dp", {"coord": coord.reshape(nf, -1), "atype": atype, "box": box,
                                                     "spin": spin.reshape(nf, -1)})
    mine = model.evaluate(coord, atype, spin, box)
    assert _rel(got["energy"].reshape(-1), mine["energy"].reshape(-1)) <= DPKIT_TOL


@requires_deepmd_kit
def test_deepmd_kit_converts_dpcores_compressed_file_to_pytorch(tmp_path):
    """DeePMD-kit's PyTorch backend reads the @version 3 descriptor (and runs its nets): forces and virials
    equal dpcore's compressed ones within the compression bound."""
    model = make_model(seed=3)
    comp = compress_model(copy.deepcopy(model), 0.9)
    comp.save(tmp_path / "c.dp")
    proc = run(["dp", "convert-backend", tmp_path / "c.dp", tmp_path / "c.pth"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    coord, atype, box = random_system(natoms=12, nframes=2, seed=4)
    got = _deepmd_eval(tmp_path, tmp_path / "c.pth", {"coord": coord.reshape(2, -1), "atype": atype, "box": box})
    mine = comp.evaluate(coord, atype, box, atomic=True)
    for key in ("energy", "force", "virial", "atom_energy", "atom_virial"):
        assert _rel(got[key].reshape(mine[key].shape), mine[key]) <= DPKIT_TOL, key


KERNEL = """
import sys
import numpy as np
from deepmd.tf.env import op_module, tf
d = np.load(sys.argv[1])
ng = d["table"].shape[1] // 6
x, em, gy = tf.constant(d["x"]), tf.constant(d["em"]), tf.constant(d["gy"])
out = op_module.tabulate_fusion_se_a(tf.constant(d["table"]), tf.constant(d["info"]), x, em, last_layer_size=ng)
gx, gem = tf.gradients(tf.reduce_sum(out * gy), [x, em])
with tf.Session() as sess:
    o, a, b = sess.run([out, gx, gem])
np.savez(sys.argv[2], out=o, gx=a, gem=b)
"""


@requires_deepmd_kit
def test_table_evaluation_equals_deepmd_kits_cpp_kernel(tmp_path):
    """TF op tabulate_fusion_se_a (and its gradient) of 3.2.0 on inputs below, inside and beyond the table."""
    env = read_model_file(FIXTURES / "two_side.dp")
    v = env["model"]["descriptor"]["compress"]["@variables"]
    table, info = v["compress_data"][0], v["compress_info"][0]
    rng = np.random.default_rng(0)
    nloc, nnei, ng = 6, 11, table.shape[1] // 6
    x = rng.uniform(info[0] - 3, info[2] + 5, (nloc * nnei, 1))
    em, gy = rng.normal(size=(nloc, nnei, 4)), rng.normal(size=(nloc, 4, ng))
    em[..., 0] = x.reshape(nloc, nnei)  # as in se_e2_a: the table input is the first column of the rows
    np.savez(tmp_path / "k.npz", table=table, info=info, x=x, em=em, gy=gy)
    (tmp_path / "kernel.py").write_text(KERNEL)
    proc = run(["python", tmp_path / "kernel.py", tmp_path / "k.npz", tmp_path / "o.npz"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ref = np.load(tmp_path / "o.npz")
    ours = dpcore.load(FIXTURES / "two_side.dp").params["descriptor"]["compress"]["table"]["0"]
    info = [float(i) for i in info]
    g, dg = tabulated_net(ours, info, x)  # the net's values and slope
    g, dg = g.reshape(nloc, nnei, ng), dg.reshape(nloc, nnei, ng)
    assert _rel(np.einsum("ijc,ijk->ick", em, g), ref["out"]) <= TOL["float64"]
    assert _rel(np.einsum("ick,ijc,ijk->ij", gy, em, dg).reshape(-1, 1), ref["gx"]) <= TOL["float64"]
    assert _rel(np.einsum("ick,ijk->ijc", gy, g), ref["gem"]) <= TOL["float64"]
    A, cache = tabulated_contraction(ours, info, em)  # what se_e2_a evaluates: R~^T G and its backward
    assert _rel(A, ref["out"]) <= TOL["float64"]
    gr = tabulated_contraction_vjp(gy, cache)
    want = ref["gem"].copy()
    want[..., 0] += ref["gx"].reshape(nloc, nnei)
    assert _rel(gr, want) <= TOL["float64"]
