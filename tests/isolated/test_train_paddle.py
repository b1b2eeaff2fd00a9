"""Training on paddle (its own process): tiny end-to-end run, exact restart, --init-model."""

import pytest

pytest.importorskip("paddle")

from test_train import check_init_model, check_train_and_restart  # noqa: E402


def test_train_restart_init_model(tmp_path):
    out = check_train_and_restart("paddle", tmp_path)
    check_init_model("paddle", tmp_path, out["run"], out["cfg"])


def test_spin_train_restart_init_model(tmp_path):
    out = check_train_and_restart("paddle", tmp_path, spin=True)
    check_init_model("paddle", tmp_path, out["run"], out["cfg"])


def test_train_options(tmp_path):
    from test_train import check_options

    check_options("paddle", tmp_path)
