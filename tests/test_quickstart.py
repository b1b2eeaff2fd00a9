"""The one-command quickstart (examples/emt/quickstart.py): data made on the way, train, freeze, test."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_quickstart_runs_the_readme_commands(tmp_path):
    pytest.importorskip("ase")
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "emt" / "quickstart.py"), "--backend", "torch",
                           "--numb-steps", "3", "--frames", "3", "--root", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    commands = [line for line in proc.stdout.splitlines() if line.startswith("$ ")]
    assert [c.split()[1:3] for c in commands] == [["python", "examples/emt/make_data.py"], ["dpcore", "train"],
                                                  ["dpcore", "freeze"], ["dpcore", "test"]]
    import dpcore

    model = dpcore.load(tmp_path / "run" / "emt.dp")
    assert model.type_map == ["Cu", "Au"]
    lcurve = (tmp_path / "run" / "lcurve.out").read_text().splitlines()
    assert lcurve[0].startswith("#") and [int(line.split()[0]) for line in lcurve[1:] if not line.startswith("#")] == [1]
    assert (tmp_path / "run" / "valid.e.out").exists()
    # the README's file names are the quickstart's
    readme = (ROOT / "README.md").read_text() + (ROOT / "examples" / "emt" / "README.md").read_text()
    for name in ("examples/emt/quickstart.py", "examples/emt/run/emt.dp"):
        assert name in readme
