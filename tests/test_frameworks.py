"""Frameworks in one process: refused where they would crash it, quiet where they only talk
(dpcore.backends.frameworks).  Each scenario runs in its own interpreter."""

import os
import subprocess
import sys
import textwrap

import pytest

MODEL = textwrap.dedent("""
    import numpy as np, dpcore
    model = dpcore.model_from_config({"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a", "sel": [8, 8],
        "rcut": 4.0, "rcut_smth": 0.5, "neuron": [4, 8], "axis_neuron": 2}, "fitting_net": {"neuron": [8]}}, seed=1)
    rng = np.random.default_rng(0)
    coord = rng.uniform(0, 6.0, (1, 6, 3)); atype = np.array([0, 0, 1, 1, 1, 1]); box = 6.0 * np.eye(3).reshape(1, 9)
""")


def _run(code: str, **env):
    return subprocess.run([sys.executable, "-c", MODEL + textwrap.dedent(code)], capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                               "DPCORE_FRAMEWORK_LOGS")}, **env}, timeout=600)


def test_paddle_after_tensorflow_is_a_clear_error_not_a_crash():
    proc = _run("""
        model.evaluate(coord, atype, box, backend="tensorflow")
        from dpcore.backends import FrameworkConflictError
        try:
            model.evaluate(coord, atype, box, backend="paddle")
        except FrameworkConflictError as e:
            print("REFUSED:", e)
        import sys; print("paddle imported:", "paddle" in sys.modules)
    """)
    assert proc.returncode == 0, f"killed by signal {-proc.returncode}" if proc.returncode < 0 else proc.stderr
    assert "REFUSED: backend 'paddle': paddle cannot be imported in a process that has already imported tensorflow" \
        in proc.stdout
    assert "in another Python process" in proc.stdout and "paddle imported: False" in proc.stdout


def test_paddle_then_tensorflow_works_in_one_process():
    proc = _run("""
        a = model.evaluate(coord, atype, box, backend="paddle")
        b = model.evaluate(coord, atype, box, backend="tensorflow")
        ref = model.evaluate(coord, atype, box)
        from dpcore.conformance.tolerances import TOLERANCES
        for out in (a, b):
            for k in ("energy", "force", "virial"):
                err = np.abs(out[k] - ref[k]).max() / np.abs(ref[k]).max()
                assert err <= TOLERANCES["float64"], (k, err)
        print("BOTH OK")
    """)
    assert proc.returncode == 0 and "BOTH OK" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("backend", ["tensorflow", "paddle"])
def test_framework_import_prints_no_noise(backend):
    proc = _run(f"""
        out = model.evaluate(coord, atype, box, backend="{backend}")
        print("ENERGY", float(out["energy"][0, 0]))
    """)
    assert proc.returncode == 0 and "ENERGY" in proc.stdout, proc.stderr[-3000:]
    assert proc.stderr == "", f"framework noise on stderr:\n{proc.stderr[:2000]}"


def test_a_users_log_setting_is_honoured():
    """With the user's own TF_CPP_MIN_LOG_LEVEL nothing is filtered or overridden."""
    proc = _run("""
        import os
        model.evaluate(coord, atype, box, backend="tensorflow")
        print("LEVEL", os.environ["TF_CPP_MIN_LOG_LEVEL"])
    """, TF_CPP_MIN_LOG_LEVEL="0")
    assert proc.returncode == 0 and "LEVEL 0" in proc.stdout, proc.stderr[-3000:]


def test_filtered_stderr_drops_only_the_noise(capfd):
    from dpcore.backends.frameworks import _filtered_stderr

    with _filtered_stderr((r"^I\d{4} ", r"^noise$")):
        os.write(2, b"I0000 00:00:1.5 123 port.cc:153] oneDNN custom operations are on\nkeep me\nnoise\n")
        print("python line", file=sys.stderr)
    # (pytest's sys.stderr does not write to descriptor 2, so only the set of lines is fixed)
    assert sorted(capfd.readouterr().err.splitlines()) == ["keep me", "python line"]


def test_filtered_stderr_passes_everything_on_when_the_import_fails(capfd):
    from dpcore.backends.frameworks import _filtered_stderr

    with pytest.raises(ImportError), _filtered_stderr((r"^I\d{4} ",)):
        os.write(2, b"I0000 noise\nreal problem\n")
        raise ImportError("broken")
    assert capfd.readouterr().err == "real problem\n"
