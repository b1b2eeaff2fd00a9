"""The ``dpcore`` command line: neighbor-stat and clear errors for bad commands/options."""

import subprocess
import sys

import numpy as np

from dpcore.cli import main


def _system(tmp_path):
    s = tmp_path / "sys"
    (s / "set.000").mkdir(parents=True)
    (s / "type.raw").write_text("0 1 1\n")
    (s / "type_map.raw").write_text("O\nH\n")
    coord = np.array([[0, 0, 0, 0.96, 0, 0, -0.24, 0.93, 0]], dtype=float)
    np.save(s / "set.000" / "coord.npy", coord)
    np.save(s / "set.000" / "box.npy", np.array([[10.0, 0, 0, 0, 10, 0, 0, 0, 10]]))
    return s


def test_neighbor_stat(tmp_path, capsys):
    assert main(["neighbor-stat", "-s", str(_system(tmp_path)), "-r", "3.0", "-t", "O", "H"]) == 0
    out = capsys.readouterr().out
    assert "min_nbor_dist: 0.96" in out
    assert "max_nbor_size: [1, 2]" in out  # each H sees O and the other H; O sees two H
    assert "suggested sel (auto:1.1): [4, 4]" in out


def test_neighbor_stat_mixed_type(tmp_path, capsys):
    assert main(["neighbor-stat", "-s", str(_system(tmp_path)), "-r", "3.0", "-t", "O", "H", "--mixed-type"]) == 0
    out = capsys.readouterr().out
    assert "max_nbor_size: [2]" in out  # every atom sees the two others, whatever their types
    assert "suggested sel (auto:1.1): 4\n" in out  # one integer, DPA-1's sel


def test_neighbor_stat_bad_type_map_is_a_clear_error(tmp_path, capsys):
    assert main(["neighbor-stat", "-s", str(_system(tmp_path)), "-r", "3.0", "-t", "O"]) == 2
    assert "elements ['H'] are not in the model type_map ['O']" in capsys.readouterr().err


def test_misspelled_command():
    proc = subprocess.run([sys.executable, "-m", "dpcore", "nieghbor-stat"], capture_output=True, text=True)
    assert proc.returncode == 2 and "invalid choice: 'nieghbor-stat'" in proc.stderr


def test_python_m_dpcore_and_version():
    import dpcore

    proc = subprocess.run([sys.executable, "-m", "dpcore", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"dpcore {dpcore.__version__}"
    proc = subprocess.run([sys.executable, "-m", "dpcore", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "neighbor-stat" in proc.stdout and "train" in proc.stdout
