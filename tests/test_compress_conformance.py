"""Compressed models in the conformance suite: the "compress" catalogue (energy and spin models with tabulated
embedding nets, one of them evaluated beyond its tables) gives the NumPy reference's numbers on all six backends,
analytic and autodiff derivatives.  Each backend runs in its own worker process."""

from dpcore.conformance import cases as C
from dpcore.conformance import runner
from dpcore.conformance.report import to_markdown

ALL = ["numpy", "array_api_strict", "torch", "jax", "tensorflow", "paddle"]


def test_compress_catalogue_is_part_of_full_and_spin():
    assert set(C.COMPRESS_CASES) <= set(C.FULL)
    assert {c for c in C.COMPRESS_CASES if c[0].startswith("spin")} <= set(C.SPIN)
    specs = [case["model"] for case in C.catalogue("compress")]
    assert all(spec.get("compress", {}).get("min_nbor_dist") for spec in specs)
    model = C.build_model(specs[0])
    assert model.config["descriptor"]["compress"]["info"] and model.params["descriptor"]["compress"]["table"]


def test_compress_catalogue_on_all_backends():
    report = runner.run(ALL, catalogue="compress", echo=lambda line: None)
    assert report["passed"], to_markdown(report)
    rows = {(r["backend"], r["output"]): r for r in report["summary"]}
    energy = sum(1 for m, _ in C.COMPRESS_CASES if not m.startswith("spin"))
    for backend in ALL[1:]:
        assert rows[(backend, "force")]["passed"] and rows[(backend, "force")]["cases"] == energy
        assert rows[(backend, "force_mag [spin]")]["passed"]
    for backend in ("torch", "jax", "tensorflow", "paddle"):
        assert rows[(backend, "force [autodiff]")]["passed"] and rows[(backend, "force [spin_autodiff]")]["passed"]
