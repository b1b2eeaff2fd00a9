"""Cross-backend conformance suite: every backend against the NumPy reference, one process per backend.

Command line: ``dpcore conformance --backends numpy,torch,jax [--model FILE | --config input.json]``
(see ``docs/conformance.md``).  From Python::

    from dpcore.conformance import run, to_markdown
    report = run(["numpy", "torch"], catalogue="quick")
    print(to_markdown(report)); assert report["passed"]

Modules: ``cases`` (the catalogue, plain data), ``kinds`` (output kinds, a registry), ``contracts``
(behaviour checks), ``worker`` (one backend process), ``runner`` (processes + collection), ``compare``
(THE dtype-keyed tolerance table), ``report`` (Markdown and JSON), ``cli``.  Nothing here imports a
framework; only a worker process does, through ``dpcore.backends.get_backend``.
"""

from .compare import TOLERANCES, compare_array
from .report import to_markdown, write_json
from .runner import run

__all__ = ["TOLERANCES", "compare_array", "run", "to_markdown", "write_json"]
