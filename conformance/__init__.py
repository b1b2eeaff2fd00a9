"""Cross-backend conformance suite and the shipped physics checks.

Command line: ``dpcore conformance --backends numpy,torch,jax [--model FILE | --config input.json]`` and
``dpcore conformance --physics`` (see ``docs/conformance.md``).  From Python::

    from dpcore.conformance import run, to_markdown
    report = run(["numpy", "torch"], catalogue="quick")
    print(to_markdown(report)); assert report["passed"]

    from dpcore.conformance.checks import run_checks, assert_passed
    assert_passed(run_checks("frozen.dp", backend="jax"))      # physics checks on any model, any backend

Modules: ``cases`` (the catalogue, plain data), ``registry`` (what an output kind is), ``kinds`` (imports every
``kinds_*`` module: the registered kinds), ``contracts`` (behaviour checks), ``worker`` (one backend process),
``runner`` (processes + collection), ``compare`` (one backend against the reference), ``tolerances`` (THE
tolerance tables), ``report`` (Markdown and JSON), ``checks`` / ``checks_*`` (the physics checks), ``physics``
(``--physics``: the checks on every backend), ``cli``.  Nothing here imports a framework; only a worker process
does, through ``dpcore.backends.get_backend`` or a model's ``evaluate``.
"""

from .checks import run_checks
from .compare import TOLERANCES, compare_array
from .report import to_markdown, write_json
from .runner import run

__all__ = ["TOLERANCES", "compare_array", "run", "run_checks", "to_markdown", "write_json"]
