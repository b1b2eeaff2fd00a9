"""Framework tests live in tests/isolated/ and run one backend per process (paddle segfaults when
imported after tensorflow); tests/test_isolated.py launches each (module, backend) pair.  To run one by hand:
``DPCORE_ISOLATED=1 DPCORE_TEST_BACKEND=torch python -m pytest tests/isolated/test_torch_jax.py``
(tests/helpers/isolation.py)."""

import os


collect_ignore = [] if os.environ.get("DPCORE_ISOLATED") else ["isolated"]

import pytest


@pytest.fixture(autouse=True)
def _fresh_sel_overflow_warnings():
    """The sel-overflow warning is once per process; each test starts with a clean record."""
    from dpcore.nlist import reset_sel_overflow_warnings

    reset_sel_overflow_warnings()
    yield
