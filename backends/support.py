"""The backend support table, generated from the backend registry (:mod:`dpcore.backends.registry`).

``python -m dpcore.backends.support`` prints the Markdown table kept in docs/backends.md.  The adapters
read their ``capabilities`` from the same registry, so the table is what the code enforces.
"""

from __future__ import annotations

from .registry import BACKENDS

COLUMNS = ("autodiff", "jit", "use_default_pf", "float32", "float64", "devices", "mixed_precision")


def capabilities(name: str) -> dict:
    """Capabilities of backend ``name`` (no framework imported)."""
    return dict(BACKENDS[name].capabilities)


def markdown_table() -> str:
    def cell(v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        return (", ".join(map(str, v)) or "-") if isinstance(v, list) else str(v)

    lines = ["| backend | pip extra | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, entry in BACKENDS.items():
        caps = capabilities(name)
        row = [cell(caps.get(c, "-")) if c != "use_default_pf" else ("yes" if caps[c] else "NotImplementedError")
               for c in COLUMNS]
        lines.append(f"| {name} | {entry.extra or '(core)'} | " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
