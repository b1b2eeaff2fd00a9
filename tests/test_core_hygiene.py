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


# ------------------------------------------------------------------------------------------- the house
PACKAGES = {"dpcore": ROOT / "dpcore", "dpcore.backends": ROOT / "backends", "dpcore.conformance": ROOT / "conformance"}


def _modules() -> dict:
    """Dotted module name -> file, for every module of dpcore, dpcore.backends and dpcore.conformance."""
    out = {}
    for pkg, folder in PACKAGES.items():
        for p in folder.rglob("*.py"):
            parts = list(p.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = p
    return out


def _import_graph() -> dict:
    """Module -> modules it imports, counting imports inside functions (relative imports resolved)."""
    import ast

    mods = _modules()
    graph = {}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names]
                # "from pkg import module" imports the module; "from pkg import name" the package
                targets = subs + ([base] if any(t not in mods for t in subs) else [])
            edges |= {t for t in targets if t in mods and t != name}
        graph[name] = edges
    return graph


def test_no_import_cycles_among_dpcore_backends_and_conformance():
    graph = _import_graph()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_over_400_lines():
    folders = [ROOT / d for d in ("dpcore", "backends", "conformance", "tests", "benchmarks", "examples")]
    long = {str(p.relative_to(ROOT)): n for f in folders for p in f.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_no_backend_name_in_the_core_outside_the_namespace_module():
    """Backend choices are data in backends/registry.py; the core names none (numpy is its own reference)."""
    pattern = re.compile(r"""["'](torch|pytorch|jax|tensorflow|paddle|array_api_strict)["']""")
    offenders = {str(p.relative_to(ROOT)): pattern.findall(p.read_text())
                 for p in (ROOT / "dpcore").rglob("*.py") if p.name != "xp.py" and pattern.search(p.read_text())}
    assert offenders == {}
