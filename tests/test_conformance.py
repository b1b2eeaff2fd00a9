"""The conformance suite (dpcore.conformance): it passes on every backend, and it can fail.

Every backend runs in its own worker process (the suite's own isolation), so these tests run in the
normal pytest process without importing any framework.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from dpcore.conformance import cases as C
from dpcore.conformance import runner
from dpcore.conformance.compare import TOLERANCES, compare_array
from dpcore.conformance.report import to_markdown
from dpcore.conformance.worker import fingerprint

ALL = ["numpy", "array_api_strict", "torch", "jax", "tensorflow", "paddle"]
OUTPUTS = ["descriptor", "atom_energy", "energy", "force", "virial", "atom_virial"]
AUTODIFF = ["torch", "jax", "tensorflow", "paddle"]
FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "jax", "tensorflow", "paddle", "array_api_strict")


def quiet(line):
    pass


def rows(report) -> dict:
    return {(r["backend"], r["output"]): r for r in report["summary"]}


def failing(report) -> set:
    return {(r["backend"], r["output"]) for r in report["summary"] if not r["passed"]}


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "dpcore.cli", "conformance", *args], capture_output=True,
                          text=True, env=env)


def fake_framework(root: Path, name: str, body: str) -> dict:
    """An importable stand-in for a framework (PYTHONPATH first), to simulate a broken installation."""
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(body)
    return {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


ONE_CASE = C.catalogue("quick")[:1]


# ------------------------------------------------------------------------------------------- the runs
@pytest.fixture(scope="module")
def all_backends(tmp_path_factory):
    """The quick catalogue on all six backends (one process each, two at a time); outputs kept."""
    keep = tmp_path_factory.mktemp("conformance-all")
    return keep, runner.run(ALL, catalogue="quick", keep=keep, echo=print)


def test_quick_catalogue_numpy_and_strict():
    report = runner.run(["numpy", "array_api_strict"], catalogue="quick", echo=quiet)
    assert report["passed"], to_markdown(report)
    table = rows(report)
    for out in OUTPUTS:
        assert table[("numpy", out)]["is_reference"]
        assert table[("array_api_strict", out)]["passed"]
        assert table[("array_api_strict", out)]["cases"] == len(C.QUICK)
    assert ("array_api_strict", "force [autodiff]") not in table  # no autodiff: not expected, not a skip
    assert {"float64", "float32"} <= set(table[("array_api_strict", "force")]["errors"])
    assert not any(p["warnings"] for p in report["processes"].values()), "catalogue systems overflow sel"


def test_all_six_backends_pass(all_backends):
    _, report = all_backends
    print("\n" + to_markdown(report))
    assert report["passed"], to_markdown(report)
    table = rows(report)
    for b in ALL:
        assert report["processes"][b]["exit_code"] == 0
        for out in OUTPUTS:
            assert table[(b, out)]["passed"]
        for out in OUTPUTS[1:]:
            assert ((b, f"{out} [autodiff]") in table) == (b in AUTODIFF)
    for b in ALL[1:]:
        for p, e in table[(b, "force")]["errors"].items():
            assert e["max_rel"] <= TOLERANCES[p]


def test_perturbed_saved_output_fails_the_suite(all_backends, tmp_path):
    keep, _ = all_backends
    work = shutil.copytree(keep, tmp_path / "run")
    name = ONE_CASE[0]["name"]
    path = work / "torch" / f"{name}.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    f = arrays["analytic.force"]
    arrays["analytic.force"] = f + 1e-9 * np.max(np.abs(f)) * np.sign(f)
    np.savez(path, **arrays)
    cases = json.loads((work / "cases.json").read_text())
    report = runner.collect(work, ALL, cases)
    assert not report["passed"]
    assert failing(report) == {("torch", "force")}
    assert "**FAIL**" in to_markdown(report)


def test_worker_perturbation_hook_fails_the_suite():
    report = runner.run(["numpy", "torch"], cases=ONE_CASE, perturb={"torch": ["analytic.force=1e-9"]}, echo=quiet)
    assert not report["passed"]
    assert failing(report) == {("torch", "force")}
    err = rows(report)[("torch", "force")]["errors"]["float64"]
    assert 0.5e-9 < err["max_rel"] < 2e-9
    md = to_markdown(report)
    assert "PERTURBED on purpose" in md and "max rel" in md


def test_unavailable_backend_is_a_failure_not_a_skip(tmp_path):
    env = fake_framework(tmp_path, "torch", "raise ImportError('simulated: torch is not installed')\n")
    report = runner.run(["numpy", "torch"], cases=ONE_CASE, worker_env={"torch": env}, echo=quiet)
    assert not report["passed"]
    assert failing(report) == {("torch", "(backend)")}
    reason = rows(report)[("torch", "(backend)")]["failures"][0]["reason"]
    assert "simulated: torch is not installed" in reason and 'pip install "dpcore[torch]"' in reason
    assert report["processes"]["torch"]["exit_code"] == 3


def test_crashing_backend_is_a_failure_and_the_cli_exits_nonzero(tmp_path):
    env = dict(os.environ, **fake_framework(tmp_path, "torch", "import os\nos.abort()\n"))
    proc = cli("--backends", "numpy,torch", "--cases", "quick", "--json", str(tmp_path / "r.json"), env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "| torch | (backend) |" in proc.stdout and "**FAIL**" in proc.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert not report["passed"] and report["processes"]["torch"]["exit_code"] < 0
    assert "SIGABRT" in report["processes"]["torch"]["exit"]


def test_unknown_backend_name_is_a_clear_error():
    proc = cli("--backends", "numpy,nosuch")
    assert proc.returncode == 2
    assert "nosuch" in proc.stderr
    for name in ALL:
        assert name in proc.stderr
    with pytest.raises(ValueError, match="valid names"):
        runner.resolve_backends("numpy,torchx")
    assert runner.resolve_backends("np,pt,tf,pd,strict,jax,torch") == ["numpy", "torch", "tensorflow", "paddle",
                                                                    "array_api_strict", "jax"]


def test_cli_json_report_and_exit_code(tmp_path):
    proc = cli("--backends", "array_api_strict", "--cases", "quick", "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] and report["tolerances"] == TOLERANCES
    for r in report["summary"]:  # the JSON holds the same rows as the printed table
        assert f"| {r['backend']} | {r['output']} | {r['cases']} |" in proc.stdout
    assert "case 1/6" in proc.stderr  # progress lines


def test_use_default_pf_contract_is_reported(all_backends):
    _, report = all_backends
    status = {c["backend"]: c["status"] for c in report["contracts"] if c["contract"] == "use_default_pf"}
    assert set(status) == set(ALL)
    if importlib.util.find_spec("dpcore.loss") is None:
        assert set(status.values()) == {"not applicable yet"}
        assert "not applicable yet" in to_markdown(report)
    else:
        assert set(status.values()) == {"pass"}, report["contracts"]


def test_user_model_file():
    report = runner.run(["array_api_strict"], model_file=FIXTURES / "se_a_float32.yaml", echo=quiet)
    assert report["passed"], to_markdown(report)
    assert len(report["cases"]) == len(C.USER_SYSTEMS)
    assert {c["precision"] for c in report["cases"]} == {"float32"}


def test_user_config(tmp_path):
    model = C.model_config("one_side")
    model["descriptor"]["sel"] = [24, 24]
    (tmp_path / "input.json").write_text(json.dumps({"model": model}))
    report = runner.run(["array_api_strict"], config_file=tmp_path / "input.json", echo=quiet)
    assert report["passed"], to_markdown(report)


def test_cli_imports_no_framework():
    code = ("import sys, dpcore.cli, dpcore.conformance.cli, dpcore.conformance.runner; dpcore.cli.build_parser(); "
            f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------- compare
def test_compare_dtype_mismatch_is_checked_before_values():
    ref = np.arange(6.0).reshape(2, 3)
    c = compare_array(ref.astype(np.float32), ref)
    assert not c.passed and "dtype float32 != reference float64" in c.reason
    assert c.max_abs is None  # values were not looked at


def test_compare_shape_mismatch_is_checked_before_values():
    ref = np.ones((4, 1))
    c = compare_array(np.ones(4), ref)  # broadcastable, equal values: still a failure
    assert not c.passed and "shape (4,) != reference (4, 1)" in c.reason
    assert c.max_abs is None


def test_compare_tolerances_come_from_the_dtype_table():
    assert TOLERANCES == {"float64": 1e-12, "float32": 1e-5}
    ref = np.array([[1.0, -2.0], [0.5, 0.0]])
    ok = compare_array(ref + 1e-13, ref)
    assert ok.passed and ok.precision == "float64" and ok.max_rel == pytest.approx(1e-13 / 2, rel=1e-3)
    assert not compare_array(ref + 1e-11, ref).passed
    # a float32 model stores energies in float64 but is held to the float32 tolerance
    assert compare_array(ref + 1e-7, ref, "float32").passed
    assert compare_array(ref + 1e-7, ref, "float32").tol == TOLERANCES["float32"]
    f32 = ref.astype(np.float32)
    assert compare_array(f32 * np.float32(1 + 1e-6), f32).passed
    assert not compare_array(f32 * np.float32(1 + 1e-4), f32).passed


def test_compare_non_finite_and_zero_reference():
    ref = np.zeros(3)
    assert compare_array(ref.copy(), ref).passed
    assert not compare_array(ref + 1e-300, ref).passed  # any error on an all-zero reference is infinite
    bad = ref.copy()
    bad[1] = np.nan
    assert not compare_array(bad, ref).passed and "NaN" in compare_array(bad, ref).reason
    assert not compare_array(ref, bad).passed  # a NaN reference is never a pass
    assert not compare_array(np.zeros(3, np.float16), np.zeros(3, np.float16)).passed  # no tolerance for float16


# ------------------------------------------------------------------------------------------- catalogue
def test_catalogue_is_data_deterministic_and_covers_the_features():
    quick, full = C.catalogue("quick"), C.catalogue("full")
    assert json.loads(json.dumps(full)) == full
    assert {c["name"] for c in quick} <= {c["name"] for c in full}
    cfgs = [c["model"]["config"] for c in quick]
    systems = [c["system"] for c in quick]
    assert {d["descriptor"]["type_one_side"] for d in cfgs} == {True, False}
    assert {d["descriptor"]["precision"] for d in cfgs} == {"float32", "float64"}
    assert any(d["fitting_net"]["numb_fparam"] and d["fitting_net"]["numb_aparam"] for d in cfgs)
    assert any(d["descriptor"]["exclude_types"] and d["atom_exclude_types"] for d in cfgs)
    assert {s["kind"] for s in systems} == {"periodic", "cluster"}
    with pytest.raises(ValueError, match="catalogue"):
        C.catalogue("huge")
    from dpcore.infer.inputs import prepare

    for case in full:
        prints = []
        for _ in range(2):
            model = C.build_model(case["model"])
            system = C.build_system(case["system"], model)
            prints.append(fingerprint(model.params, system))
        assert prints[0] == prints[1], case["name"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no sel overflow in the catalogue
            inputs, _, _ = prepare(model, system["coord"], system["atype"], system["box"], system.get("fparam"),
                                   system.get("aparam"))
        if case["name"].endswith("small_box"):
            assert np.abs(inputs["pair_shift"]).max() >= 2  # several image shells
        assert model.params["descriptor"]["dstd"].std() > 0 and np.any(model.params["out_bias"] != 0)


# ------------------------------------------------------------------------------------------- contracts
def test_use_default_pf_check_against_a_loss_module(monkeypatch):
    """The check itself, on a stand-in ``dpcore.loss`` (the real one may not exist yet)."""
    import importlib.machinery
    import types

    from dpcore.conformance import contracts

    def make_loss(cfg, backend):
        if cfg.get("use_default_pf") and backend in ("tensorflow", "paddle"):
            raise NotImplementedError(f"{backend.capitalize()} backend does not support use_default_pf=True.")
        return object()

    fake = types.ModuleType("dpcore.loss")
    fake.__spec__ = importlib.machinery.ModuleSpec("dpcore.loss", None)
    fake.make_loss = make_loss
    monkeypatch.setitem(sys.modules, "dpcore.loss", fake)

    def backend(name, supported):
        return types.SimpleNamespace(name=name, capabilities={"use_default_pf": supported})

    for name in ALL:
        ok = name not in ("tensorflow", "paddle")
        assert contracts.use_default_pf(backend(name, ok))["status"] == contracts.PASS, name
        assert contracts.use_default_pf(backend(name, not ok))["status"] == contracts.FAIL, name  # wrong capability
    fake.make_loss = lambda cfg, backend: object()  # a backend that forgets to refuse
    assert contracts.use_default_pf(backend("paddle", False))["status"] == contracts.FAIL
    fake.make_loss = lambda cfg, backend: (_ for _ in ()).throw(NotImplementedError("not supported"))
    result = contracts.use_default_pf(backend("tensorflow", False))  # message must name backend and option
    assert result["status"] == contracts.FAIL and "does not name" in result["detail"]


# ------------------------------------------------------------------------------------ training kinds
def _perturb_saved(work, backend, key, rel):
    path = work / backend / f"{TRAIN_CASE[0]['name']}.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    a = arrays[key]
    arrays[key] = a + rel * np.max(np.abs(a)) * np.where(a >= 0, 1.0, -1.0)
    np.savez(path, **arrays)


TRAIN_CASE = C.catalogue("full")[:1]  # two_side-pbc_triclinic with loss, loss_default_pf, train_step


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    keep = tmp_path_factory.mktemp("conformance-train")
    return keep, runner.run(["numpy", "torch", "paddle"], cases=TRAIN_CASE, keep=keep, echo=quiet)


def test_training_kinds_run_and_agree(all_backends, train_run):
    from dpcore.conformance.kinds import KINDS

    assert TRAIN_CASE[0]["kinds"] == C.TRAIN_KINDS and ONE_CASE[0]["kinds"] == ["loss", "loss_default_pf"]
    assert all("kinds" not in c for c in C.catalogue("quick")[1:])
    loss_rows = [f"{o} [loss]" for o in KINDS["loss"].outputs]
    dpf_rows = [f"{o} [loss_default_pf]" for o in KINDS["loss_default_pf"].outputs]
    assert len(loss_rows) == 32 and len(dpf_rows) == 16
    table = rows(all_backends[1])
    for b in ALL:
        for label in loss_rows:
            assert table[(b, label)]["passed"] and table[(b, label)]["cases"] == 1
            assert table[(b, label)]["is_reference"] == (b == "numpy")
        for label in dpf_rows:  # refused on tensorflow / paddle: the use_default_pf contract's job
            assert ((b, label) in table) == (b not in ("tensorflow", "paddle"))
        assert (b, "update [train_step]") not in table  # quick: no train_step
    report = train_run[1]
    assert report["passed"], to_markdown(report)
    table = rows(report)
    for out in ("loss", "params", "update", "m", "v"):
        assert table[("torch", f"{out} [train_step]")]["is_reference"]
        assert table[("paddle", f"{out} [train_step]")]["passed"]
        assert not table[("paddle", f"{out} [train_step]")]["is_reference"]
        assert ("numpy", f"{out} [train_step]") not in table


def test_perturbed_loss_and_train_step_outputs_fail(train_run, tmp_path):
    keep, _ = train_run
    names = ["numpy", "torch", "paddle"]
    cases = json.loads((keep / "cases.json").read_text())
    work = shutil.copytree(keep, tmp_path / "loss")
    _perturb_saved(work, "torch", "loss.mae-int-rf0.5-pf-miss", 1e-10)
    _perturb_saved(work, "paddle", "train_step.update", 1e-10)
    report = runner.collect(work, names, cases)
    assert failing(report) == {("torch", "mae-int-rf0.5-pf-miss [loss]"), ("paddle", "update [train_step]")}
    work = shutil.copytree(keep, tmp_path / "ref")
    _perturb_saved(work, "torch", "train_step.m", 1e-10)  # the train_step reference: the other backend fails
    report = runner.collect(work, names, cases)
    assert failing(report) == {("paddle", "m [train_step]")}


# ------------------------------------------------------------------------------------------- module structure
def _local_imports(module: str) -> set:
    """The conformance modules ``conformance/<module>.py`` imports (relative imports, inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / "conformance" / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
    return found


def test_kinds_modules_import_only_the_registry_and_kinds_imports_them_all():
    """No cycle through the kinds (tests/test_core_hygiene.py checks the whole tree): a kinds_* module imports
    the registry, never kinds.py nor another kinds module; kinds.py imports them all; the worker, compare and
    runner read KINDS from kinds.py, so every kind is registered."""
    kinds_modules = sorted(p.stem for p in (ROOT / "conformance").glob("kinds_*.py"))
    assert kinds_modules == ["kinds_model", "kinds_train"]
    for m in kinds_modules:
        local = _local_imports(m)
        assert "registry" in local and not local & {"kinds", *kinds_modules}, (m, local)
    assert set(kinds_modules) <= _local_imports("kinds") and "kinds" not in _local_imports("registry")
    for user in ("worker", "compare", "runner"):
        assert "kinds" in _local_imports(user), user
    from dpcore.conformance.kinds import KINDS

    assert list(KINDS) == ["descriptor", "analytic", "autodiff", "spin", "spin_autodiff", "loss", "loss_default_pf",
                           "train_step"]  # the report's row order
