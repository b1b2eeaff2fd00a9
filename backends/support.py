"""The backend support table, generated from each adapter's ``capabilities`` (one process per backend).

``python -m dpcore.backends.support`` prints the Markdown table kept in docs/backends.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

from . import BACKENDS

COLUMNS = ("autodiff", "jit", "use_default_pf", "float32", "float64", "devices")
_PROBE = ("import json, importlib; m = importlib.import_module('dpcore.backends.{name}'); "
          "print(json.dumps(m.BACKEND_CLASS.capabilities))")


def capabilities(name: str) -> dict | None:
    """Capabilities of backend ``name`` read in a fresh process (None if its framework is not installed)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(name=name)], capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


def markdown_table() -> str:
    def cell(v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        return ", ".join(map(str, v)) if isinstance(v, list) else str(v)

    lines = ["| backend | pip extra | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, entry in BACKENDS.items():
        extra = entry.extra
        caps = capabilities(name)
        if caps is None:
            raise RuntimeError(f"backend {name!r} is not installed; install dpcore[all] to generate the table")
        row = [cell(caps.get(c, "-")) if c != "use_default_pf" else ("yes" if caps[c] else "NotImplementedError")
               for c in COLUMNS]
        lines.append(f"| {name} | {extra or '(core)'} | " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
