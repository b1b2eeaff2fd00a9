"""The conformance report: one dict (written as JSON) and its Markdown rendering.

The Markdown table has one row per (backend, output): the number of cases, the largest absolute and
relative error per precision (see :mod:`dpcore.conformance.compare` for the definitions) and the result.
"""

from __future__ import annotations

import json
from pathlib import Path

from .compare import TOLERANCES

ERROR_DEFINITION = ("max abs = max |x - ref| over all entries; max rel = max abs / max |ref| of that output "
                    "(per case; the table shows the largest over cases)")


def build_report(*, backends, reference, cases, catalogue, records, summary, contracts, processes, seconds) -> dict:
    passed = (all(r["passed"] for r in records) and bool(records)
              and all(c["status"] != "FAIL" for c in contracts))
    return {
        "passed": passed,
        "reference": reference,
        "backends": list(backends),
        "catalogue": catalogue,
        "tolerances": dict(TOLERANCES),
        "error_definition": ERROR_DEFINITION,
        "cases": cases,
        "summary": summary,
        "contracts": contracts,
        "processes": processes,
        "records": records,
        "seconds": seconds,
    }


def write_json(report: dict, path) -> None:
    Path(path).write_text(json.dumps(report, indent=1, default=str) + "\n")


def _num(v) -> str:
    if v is None:
        return "-"
    return "0" if v == 0 else f"{v:.1e}"


def _result(row) -> str:
    if not row["passed"]:
        return "**FAIL**"
    return "reference" if row["is_reference"] else "pass"


def _first_lines(text: str, n: int = 12) -> str:
    lines = str(text).strip().splitlines()
    if len(lines) > n:  # keep the head and the exception line of a traceback
        lines = lines[: n - 2] + ["    ..."] + lines[-1:]
    return "\n".join("    " + ln for ln in lines)


def to_markdown(report: dict) -> str:
    precisions = [p for p in TOLERANCES if any(p in r["errors"] for r in report["summary"])] or list(TOLERANCES)
    tol = ", ".join(f"{p} <= {t:.0e}" for p, t in TOLERANCES.items())
    lines = [
        f"## dpcore conformance: {'PASS' if report['passed'] else 'FAIL'}",
        "",
        f"Reference: {report['reference']} (analytic derivatives). Cases: {len(report['cases'])} "
        f"({report['catalogue']}). Relative tolerances: {tol}.",
        f"Errors: {report['error_definition']}.",
        "",
    ]
    head = ["backend", "output", "cases"] + [f"{p} {w}" for p in precisions for w in ("max abs", "max rel")] + ["result"]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in report["summary"]:
        cells = [row["backend"], row["output"], str(row["cases"])]
        for p in precisions:
            e = row["errors"].get(p)
            cells += [_num(e and e["max_abs"]), _num(e and e["max_rel"])]
        lines.append("| " + " | ".join(cells + [_result(row)]) + " |")
    if report["contracts"]:
        names = sorted({c["contract"] for c in report["contracts"]})
        bes = list(dict.fromkeys(c["backend"] for c in report["contracts"]))
        lines += ["", "### Contracts", "", "| contract | " + " | ".join(bes) + " |", "|" + "---|" * (len(bes) + 1)]
        table = {(c["contract"], c["backend"]): c for c in report["contracts"]}
        for n in names:
            lines.append(f"| {n} | " + " | ".join(table[(n, b)]["status"] if (n, b) in table else "-" for b in bes)
                         + " |")
        for n in names:
            details = sorted({f"{c['detail']}" for c in report["contracts"] if c["contract"] == n})
            if len(details) == 1:
                lines.append(f"\n{n}: {details[0]}")
            else:
                lines += [f"\n{n}:"] + [f"- {c['backend']}: {c['detail']}" for c in report["contracts"] if c["contract"] == n]
    lines += ["", "### Backend processes", "", "| backend | version | exit | seconds | settings | notes |",
              "|---|---|---|---|---|---|"]
    for name, p in report["processes"].items():
        notes = []
        if p.get("perturb"):
            notes.append(f"PERTURBED on purpose (self-test): {p['perturb']}")
        if p.get("warnings"):
            notes.append(f"{len(p['warnings'])} warning(s), e.g. {p['warnings'][0]}")
        if not p.get("requested", True):
            notes.append("run as the reference only")
        settings = json.dumps(p.get("settings") or {}, default=str)
        lines.append(f"| {name} | {p.get('version') or '-'} | {p.get('exit_code')} | {_num_s(p.get('seconds'))} "
                     f"| {settings} | {'; '.join(notes)} |")
    failures = [r for r in report["summary"] if not r["passed"]]
    if failures:
        lines += ["", "### Failures", ""]
        for row in failures:
            for f in row["failures"][:3]:
                lines.append(f"- {row['backend']} / {row['output']} / case {f['case']}:")
                lines.append(_first_lines(f["reason"]))
            if len(row["failures"]) > 3:
                lines.append(f"- ... {len(row['failures']) - 3} more case(s) of {row['backend']} / {row['output']}")
        for name, p in report["processes"].items():
            if p.get("log_tail") and any(r["backend"] == name and r["output"] == "(backend)" for r in failures):
                lines += [f"- {name} process output (last lines):", _first_lines(p["log_tail"], 20)]
    lines.append(f"\nTotal time {report['seconds']:.1f} s.")
    return "\n".join(lines) + "\n"


def _num_s(v) -> str:
    return "-" if v is None else f"{v:.1f}"
