"""DPA-1 models in the conformance suite: the "dpa1" catalogue (concat without smoothing and davg != 0 on
periodic, per-frame-type, padded and cluster systems; se_atten_v2 in float32 with exclusions; a DPA-1 spin model)
gives the NumPy reference's numbers on all six backends, analytic and autodiff derivatives.  Each backend runs
in its own worker process."""

from dpcore.conformance import cases as C
from dpcore.conformance import runner
from dpcore.conformance.report import to_markdown

ALL = ["numpy", "array_api_strict", "torch", "jax", "tensorflow", "paddle"]


def test_dpa1_catalogue_covers_the_options():
    cfgs = {m: C.model_config(m) for m, _ in C.DPA1_CASES}
    types = {c["descriptor"]["type"] for c in cfgs.values()}
    assert types == {"dpa1", "se_atten_v2"} and any("spin" in c for c in cfgs.values())
    assert {c["descriptor"]["precision"] for c in cfgs.values()} == {"float32", "float64"}
    assert any(not c["descriptor"].get("smooth_type_embedding", True) and not c["descriptor"]["set_davg_zero"]
               for c in cfgs.values())  # empty slots typed as the first atom matter
    assert {s for _, s in C.DPA1_CASES} >= {"per_frame_types", "pbc_padding", "cluster"}


def test_dpa1_catalogue_on_all_backends():
    report = runner.run(ALL, catalogue="dpa1", echo=lambda line: None)
    assert report["passed"], to_markdown(report)
    rows = {(r["backend"], r["output"]): r for r in report["summary"]}
    energy = sum(1 for m, _ in C.DPA1_CASES if "spin" not in m)
    for backend in ALL[1:]:
        assert rows[(backend, "force")]["passed"] and rows[(backend, "force")]["cases"] == energy
        assert rows[(backend, "force_mag [spin]")]["passed"]
    for backend in ("torch", "jax", "tensorflow", "paddle"):
        assert rows[(backend, "force [autodiff]")]["passed"] and rows[(backend, "force [spin_autodiff]")]["passed"]
