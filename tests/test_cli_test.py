"""``dpcore test``: errors vs labels, weighted summary, detail files in file atom order, clear errors."""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dpcore.cli import main
from dpcore.infer.metrics import ErrorStat, energy_errors, error_stat, merge_errors

from helpers import TOL, make_model, random_system
from helpers.deepmd_kit import DP, env as dpkit_env, requires_deepmd_kit

TYPES = np.array([1, 0, 1, 1, 0, 1])  # deliberately not sorted by type


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.yaml"
    make_model().save(path)
    return path


@pytest.fixture(scope="module")
def model():
    return make_model()


def write_system(root, model, nframes=3, seed=0, labels=("energy", "force", "virial"), shift=None, nopbc=False):
    """A system labelled by ``model`` (plus ``shift[name]`` added to the labels); atoms in TYPES order."""
    coord, _, box = random_system(natoms=len(TYPES), nframes=nframes, seed=seed)
    out = model.evaluate(coord, TYPES, None if nopbc else box)
    lab = {"energy": out["energy"].reshape(nframes), "force": out["force"].reshape(nframes, -1),
           "virial": out["virial"].reshape(nframes, 9)}
    for k, v in (shift or {}).items():
        lab[k] = lab[k] + v.reshape(lab[k].shape)
    s = root / "set.000"
    s.mkdir(parents=True)
    (root / "type.raw").write_text(" ".join(map(str, TYPES)) + "\n")
    (root / "type_map.raw").write_text("O\nH\n")
    np.save(s / "coord.npy", coord.reshape(nframes, -1))
    if nopbc:
        (root / "nopbc").touch()
    else:
        np.save(s / "box.npy", box)
    for k in labels:
        np.save(s / f"{k}.npy", lab[k])
    return coord, box, out, lab


def parse(text):
    """{(block index, line label): value} of the report (block -1 = weighted average)."""
    blocks, cur = [], None
    for line in text.splitlines():
        if line.startswith("# testing system") or line.startswith("# ----------weighted"):
            cur = {}
            blocks.append(cur)
        m = re.match(r"^([A-Za-z/ ]+?)\s*: (\S+)", line)
        if m and cur is not None and not line.startswith("#"):
            cur[m.group(1)] = float(m.group(2))
    return blocks


def test_same_model_gives_zero_errors(tmp_path, model, model_file, capsys):
    write_system(tmp_path / "sys", model)
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path)]) == 0
    blocks = parse(capsys.readouterr().out)
    assert len(blocks) == 2  # one system + the weighted average
    for b in blocks:
        assert len(b) == 12
        assert all(v < 1e-10 for v in b.values()), b


def test_perturbed_labels_give_hand_computed_errors(tmp_path, model, model_file, capsys):
    rng = np.random.default_rng(5)
    nf, n = 4, len(TYPES)
    de, df, dv = rng.normal(size=nf), rng.normal(size=(nf, n, 3)), rng.normal(size=(nf, 9))
    _, box, _, _ = write_system(tmp_path / "a", model, nframes=nf, shift={"energy": de, "force": df, "virial": dv})
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path / "a")]) == 0
    got = parse(capsys.readouterr().out)[0]
    ds = -dv / np.abs(np.linalg.det(box.reshape(nf, 3, 3)))[:, None]  # stress = -virial / volume
    want = {
        "Energy MAE": np.mean(np.abs(de)), "Energy RMSE": np.sqrt(np.mean(de**2)),
        "Energy MAE/Natoms": np.mean(np.abs(de)) / n, "Energy RMSE/Natoms": np.sqrt(np.mean(de**2)) / n,
        "Force  MAE": np.mean(np.abs(df)), "Force  RMSE": np.sqrt(np.mean(df**2)),
        "Virial MAE": np.mean(np.abs(dv)), "Virial RMSE": np.sqrt(np.mean(dv**2)),
        "Virial MAE/Natoms": np.mean(np.abs(dv)) / n, "Virial RMSE/Natoms": np.sqrt(np.mean(dv**2)) / n,
        "Stress MAE": np.mean(np.abs(ds)), "Stress RMSE": np.sqrt(np.mean(ds**2)),
    }
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-6), k  # printed with 7 significant digits


def test_weighted_average_over_systems_and_first_n_frames(tmp_path, model, model_file, capsys):
    rng = np.random.default_rng(7)
    n = len(TYPES)
    de1, df1 = rng.normal(size=5), rng.normal(size=(5, n, 3))
    de2 = rng.normal(size=2)
    write_system(tmp_path / "s1", model, nframes=5, seed=1, shift={"energy": de1, "force": df1}, labels=("energy", "force"))
    write_system(tmp_path / "s2", model, nframes=2, seed=2, shift={"energy": de2}, labels=("energy",))
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path), "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("# number of test data : 3") == 1 and out.count("# number of test data : 2") == 1
    avg = parse(out)[-1]
    e = np.concatenate([de1[:3], de2])
    assert avg["Energy RMSE"] == pytest.approx(np.sqrt(np.mean(e**2)), rel=1e-6)
    assert avg["Energy MAE"] == pytest.approx(np.mean(np.abs(e)), rel=1e-6)
    # only s1 has forces: its errors are the average
    assert avg["Force  RMSE"] == pytest.approx(np.sqrt(np.mean(df1[:3] ** 2)), rel=1e-6)
    assert np.isnan(avg["Virial MAE"])  # no system has virial labels
    assert "# force: no labels (set.*/force.npy absent); its errors print nan" in out


def test_detail_files_in_file_atom_order(tmp_path, model, model_file):
    rng = np.random.default_rng(3)
    nf, n = 2, len(TYPES)
    df = rng.normal(size=(nf, n, 3))
    coord, box, out, lab = write_system(tmp_path / "sys", model, nframes=nf, shift={"force": df})
    prefix = tmp_path / "out" / "detail"
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path / "sys"), "-d", str(prefix)]) == 0
    for suffix, ncol in ((".e.out", 2), (".e_peratom.out", 2), (".f.out", 6), (".v.out", 18), (".v_peratom.out", 18)):
        path = prefix.with_suffix(suffix)
        first = path.read_text().splitlines()[0]
        assert first.startswith(f"# {tmp_path / 'sys'}: data_")
        assert np.loadtxt(path).shape[1] == ncol
    assert (prefix.with_suffix(".f.out").read_text().splitlines()[0]
            .endswith(": data_fx data_fy data_fz pred_fx pred_fy pred_fz"))
    f = np.loadtxt(prefix.with_suffix(".f.out"))
    np.testing.assert_allclose(f[:, :3], lab["force"].reshape(-1, 3), rtol=1e-15)  # file order, row per atom
    np.testing.assert_allclose(f[:, 3:], out["force"].reshape(-1, 3), rtol=TOL["float64"])
    e = np.loadtxt(prefix.with_suffix(".e.out"))
    np.testing.assert_allclose(e, np.column_stack([lab["energy"], out["energy"].ravel()]), rtol=1e-15)
    np.testing.assert_allclose(np.loadtxt(prefix.with_suffix(".e_peratom.out")), e / n, rtol=1e-15)
    v = np.loadtxt(prefix.with_suffix(".v.out"))
    np.testing.assert_allclose(v[:, 9:], out["virial"], rtol=TOL["float64"])
    np.testing.assert_allclose(np.loadtxt(prefix.with_suffix(".v_peratom.out")), v / n, rtol=1e-15)
    s = np.loadtxt(prefix.with_suffix(".s.out"))
    np.testing.assert_allclose(s, -v / np.abs(np.linalg.det(box.reshape(nf, 3, 3)))[:, None], rtol=1e-14)
    assert prefix.with_suffix(".s.out").read_text().startswith(f"# {tmp_path / 'sys'} (eV/Å³): data_sxx data_sxy")


def test_missing_labels_are_nan(tmp_path, model, model_file, capsys):
    write_system(tmp_path / "sys", model, labels=("force",))
    prefix = tmp_path / "d"
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path / "sys"), "-d", str(prefix)]) == 0
    out = capsys.readouterr().out
    got = parse(out)[0]
    assert np.isnan(got["Energy MAE"]) and np.isnan(got["Virial RMSE/Natoms"])
    assert got["Force  RMSE"] < 1e-10
    assert "# energy: no labels (set.*/energy.npy absent); its errors print nan" in out
    e = np.loadtxt(prefix.with_suffix(".e.out"))
    assert np.isnan(e[:, 0]).all() and np.isfinite(e[:, 1]).all()
    assert np.isnan(np.loadtxt(prefix.with_suffix(".v.out"))[:, :9]).all()


def test_nopbc_system_reports_no_virial(tmp_path, model, model_file, capsys):
    write_system(tmp_path / "sys", model, nopbc=True)
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path / "sys")]) == 0
    out = capsys.readouterr().out
    got = parse(out)[0]
    assert got["Energy RMSE"] < 1e-10 and np.isnan(got["Virial MAE"]) and np.isnan(got["Stress RMSE"])
    assert "# virial: not reported for a non-periodic system" in out


def test_bad_paths_are_clear_errors(tmp_path, model, model_file, capsys):
    write_system(tmp_path / "sys", model)
    assert main(["test", "-m", str(tmp_path / "nope.dp"), "-s", str(tmp_path / "sys")]) == 2
    assert "model file" in capsys.readouterr().err
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path / "missing")]) == 2
    assert "system path not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path / "empty")]) == 2
    assert "no deepmd/npy system found" in capsys.readouterr().err
    (tmp_path / "model.txt").write_text("hello")
    assert main(["test", "-m", str(tmp_path / "model.txt"), "-s", str(tmp_path / "sys")]) == 2
    assert "unknown model file extension" in capsys.readouterr().err
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path / "sys"), "-n", "-1"]) == 2
    assert "--numb-test must be >= 0" in capsys.readouterr().err


def test_detail_file_never_overwrites_an_input(tmp_path, model, model_file, capsys):
    write_system(tmp_path / "sys", model)
    keep = tmp_path / "sys" / "notes.e.out"
    keep.write_text("mine\n")
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path / "sys"), "-d", str(tmp_path / "sys" / "notes")]) == 2
    assert "would overwrite an input file" in capsys.readouterr().err
    assert keep.read_text() == "mine\n"


def test_type_map_mismatch_is_a_clear_error(tmp_path, model, model_file, capsys):
    write_system(tmp_path / "sys", model)
    (tmp_path / "sys" / "type_map.raw").write_text("O\nC\n")
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path / "sys")]) == 2
    assert "elements ['C'] are not in the model type_map ['O', 'H']" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- dpcore.infer.metrics
def test_metrics_merge_is_exact():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=7), rng.normal(size=(3, 4))
    merged = merge_errors([{"x": error_stat(a, 0)}, {"x": error_stat(b, 0), "y": error_stat(b, 1)}, {}])
    whole = error_stat(np.concatenate([a, b.ravel()]), 0)
    assert merged["x"].mae == pytest.approx(whole.mae, rel=1e-14)
    assert merged["x"].rmse == pytest.approx(whole.rmse, rel=1e-14)
    assert merged["x"].weight == 19 and merged["y"].weight == 12
    assert np.isnan(error_stat(np.zeros(0), np.zeros(0)).mae)


def test_metrics_force_mag_over_magnetic_atoms_only():
    nf, n = 2, 3
    pred = {"energy": np.zeros((nf, 1)), "force": np.zeros((nf, n, 3)), "virial": np.zeros((nf, 9)),
            "force_mag": np.ones((nf, n, 3)), "mask_mag": np.array([[1, 0, 1]] * nf)[..., None]}
    label = {"energy": np.ones(nf), "force_mag": np.zeros((nf, n, 3))}
    label["force_mag"][:, 1] = 100.0  # non-magnetic atom: ignored
    err = energy_errors(pred, label, {"energy": np.array([1.0, 0.0])}, natoms=n)
    assert set(err) == {"energy", "energy_per_atom", "force_mag"}
    assert err["energy"] == ErrorStat(1.0, 1.0, 1.0)  # only frame 0 has an energy label
    assert err["energy_per_atom"].mae == pytest.approx(1 / 3)
    assert err["force_mag"] == ErrorStat(1.0, 1.0, 12.0)


# ------------------------------------------------------------------------------------- spin models
def _spin_model():
    from dpcore import SpinEnergyModel
    from helpers import make_config

    cfg = make_config()
    cfg["spin"] = {"use_spin": [True, False], "virtual_scale": 0.3}
    return SpinEnergyModel.from_config(cfg, seed=3)


def test_spin_model_reports_force_mag_over_magnetic_atoms(tmp_path, capsys):
    model = _spin_model()
    path = tmp_path / "spin.yaml"
    model.save(path)
    nf, n = 3, len(TYPES)
    coord, _, box = random_system(natoms=n, nframes=nf, seed=11)
    rng = np.random.default_rng(12)
    spin = rng.normal(size=(nf, n, 3))
    out = model.evaluate(coord, TYPES, spin, box)
    dfm = rng.normal(size=(nf, n, 3))
    mag = TYPES == 0  # use_spin = [True, False]: type 0 (O) is magnetic
    fm_label = out["force_mag"] + dfm * mag[None, :, None]
    fm_label[:, ~mag] = 5.0  # label noise on non-magnetic atoms must be ignored
    root = tmp_path / "sys"
    (root / "set.000").mkdir(parents=True)
    (root / "type.raw").write_text(" ".join(map(str, TYPES)))
    (root / "type_map.raw").write_text("O\nH\n")
    for k, v in (("coord", coord), ("box", box), ("spin", spin), ("energy", out["energy"]),
                 ("force", out["force"]), ("force_mag", fm_label)):
        np.save(root / "set.000" / f"{k}.npy", np.reshape(v, (nf, -1)))
    prefix = tmp_path / "d"
    assert main(["test", "-m", str(path), "-s", str(root), "-d", str(prefix)]) == 0
    text = capsys.readouterr().out
    got = parse(text)[0]
    assert got["Energy RMSE"] < 1e-10 and got["Force  RMSE"] < 1e-10
    d = dfm[:, mag]
    assert got["Force spin MAE"] == pytest.approx(np.mean(np.abs(d)), rel=1e-6)
    assert got["Force spin RMSE"] == pytest.approx(np.sqrt(np.mean(d**2)), rel=1e-6)
    assert parse(text)[-1]["Force spin RMSE"] == got["Force spin RMSE"]
    fm = np.loadtxt(prefix.with_suffix(".fm.out"))
    assert fm.shape == (nf * mag.sum(), 6)  # magnetic atoms only, file order
    np.testing.assert_allclose(fm[:, :3], fm_label[:, mag].reshape(-1, 3), rtol=1e-15)
    np.testing.assert_allclose(fm[:, 3:], out["force_mag"][:, mag].reshape(-1, 3), rtol=TOL["float64"])


def test_spin_model_without_spin_data_is_a_clear_error(tmp_path, model, capsys):
    path = tmp_path / "spin.yaml"
    _spin_model().save(path)
    write_system(tmp_path / "sys", model)
    assert main(["test", "-m", str(path), "-s", str(tmp_path / "sys")]) == 2
    assert "spin.npy: missing" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- vs DeePMD-kit


@requires_deepmd_kit
def test_same_report_and_detail_files_as_deepmd_kit(tmp_path, model, model_file, capsys):
    """DeePMD-kit 3.2 ``dp test`` on the same model file and data: same energy errors and detail layout
    (its NumPy backend returns NaN forces, so only the data columns of .f.out are compared)."""
    rng = np.random.default_rng(8)
    write_system(tmp_path / "sys", model, nframes=3, shift={"energy": rng.normal(size=3)})
    proc = subprocess.run([str(DP), "test", "-m", str(model_file), "-s", str(tmp_path / "sys"), "-d",
                           str(tmp_path / "dp")], capture_output=True, text=True, timeout=300, env=dpkit_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"INFO\s+(Energy [A-Za-z/ ]+?)\s*: (\S+)", proc.stderr + proc.stdout)}
    assert main(["test", "-m", str(model_file), "-s", str(tmp_path / "sys"), "-d", str(tmp_path / "us")]) == 0
    ours = parse(capsys.readouterr().out)[-1]
    assert len(theirs) == 4
    for k, v in theirs.items():
        assert ours[k] == pytest.approx(v, rel=1e-6), k
    for suffix in (".e.out", ".e_peratom.out", ".f.out", ".v.out", ".s.out"):
        a, b = (tmp_path / f"dp{suffix}").read_text(), (tmp_path / f"us{suffix}").read_text()
        assert a.splitlines()[0] == b.splitlines()[0], suffix  # same header line
        da, db = np.loadtxt(tmp_path / f"dp{suffix}"), np.loadtxt(tmp_path / f"us{suffix}")
        half = da.shape[1] // 2
        np.testing.assert_allclose(db[:, :half], da[:, :half], rtol=1e-15, err_msg=suffix)  # data, file atom order
        if suffix.startswith(".e"):
            np.testing.assert_allclose(db[:, half:], da[:, half:], rtol=1e-10, err_msg=suffix)
