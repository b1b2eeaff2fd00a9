"""Package hygiene: no framework import from the core, backend errors, the namespace-subset list is true."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FRAMEWORKS = ("torch", "jax", "tensorflow", "paddle", "array_api_strict")


def test_import_dpcore_imports_no_framework():
    code = ("import sys, dpcore, dpcore.model.energy, dpcore.nlist, dpcore.io, dpcore.cli, dpcore.backends; "
            "dpcore.backends.get_backend('numpy'); "
            f"bad = [m for m in {FRAMEWORKS!r} if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_framework_import_statement_under_dpcore():
    pattern = re.compile(rf"^\s*(import|from)\s+({'|'.join(FRAMEWORKS)})\b", re.M)
    offenders = [str(p) for p in (ROOT / "dpcore").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_namespace_subset_lists_every_function_the_core_uses():
    from dpcore.backends.namespace_subset import DTYPES, EXTENSIONS, FUNCTIONS

    used = set()
    for p in (ROOT / "dpcore").rglob("*.py"):
        used |= set(re.findall(r"\bxp\.([a-zA-Z_][a-zA-Z0-9_]*)", p.read_text()))
    missing = sorted(used - set(FUNCTIONS) - set(DTYPES) - set(EXTENSIONS))
    assert missing == [], f"add these to backends/namespace_subset.py (and the TF/Paddle shims): {missing}"


def test_unknown_backend_is_a_clear_error():
    from dpcore.backends import get_backend

    with pytest.raises(ValueError, match="unknown backend 'pytorchh'.*expected one of"):
        get_backend("pytorchh")


def test_docs_support_table_is_generated_from_capabilities():
    from dpcore.backends.support import markdown_table

    text = (ROOT / "docs" / "backends.md").read_text()
    table = text.split("<!-- support-table:begin -->")[1].split("<!-- support-table:end -->")[0].strip()
    assert table == markdown_table(), "docs/backends.md is stale: regenerate with python -m dpcore.backends.support"
