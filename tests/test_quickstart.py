"""`brainjepa quickstart` end to end on simulated data (the real-data path differs only in where the store comes
from; `tests/test_samples.py` covers fetching it)."""

from __future__ import annotations

import json

from brainjepa.cli import main


def test_quickstart_simulated_writes_a_complete_report(tmp_path):
    out = tmp_path / "qs"
    code = main(["quickstart", "--data", "simulated", "--minutes", "0.02", "--folds", "2", "--seeds", "1",
                 "--out", str(out)])
    assert code == 0
    report = (out / "report.md").read_text()
    for figure in ("figures/gradients", "figures/masks", "figures/training_curves", "figures/pca",
                   "evaluate/evaluate"):
        assert (out / f"{figure}.png").stat().st_size > 5000
        assert f"{figure}.png" in report
    assert "**The data are simulated.**" in report
    # The suite ran on the quickstart's own simulated store, for the simulation tasks only, and its table is in
    # the report.
    facts = json.loads((out / "facts.json").read_text())
    assert facts["runs"] == 120 and facts["label"] == "group"
    assert facts["suite"]["tasks"] == ["simulation/group", "simulation/coupling"]
    assert (facts["suite"]["folds"], facts["suite"]["seeds"]) == (2, 1)
    assert set(facts["step_seconds"]) == {"data", "gradients", "pretraining", "evaluation"}
    table = (out / "evaluate" / "evaluate.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| simulation/")]
    assert len(rows) == 2 and all(row in report for row in rows)
    assert f"--store simulation={out / 'store'}" in report
    assert not (out / "evaluate" / "stores").exists()  # nothing simulated or fetched a second time
    # The findings are derived from the suite's paired differences (tests/test_report.py checks the derivation):
    # every comparison of brainjepa is classified as differing or not, and a simulated run says so.
    findings = report[report.index("## 7. Findings"):report.index("## 8. Time")]
    for task in ("simulation/group", "simulation/coupling"):
        assert f"**{task}**" in findings
    for other in ("random-init", "FC", "tangent"):
        verdicts = (f"brainjepa and {other} do not differ", f"**brainjepa scores higher than {other}**",
                    f"**brainjepa scores lower than {other}**", f"brainjepa vs {other}: difference")
        assert sum(findings.count(v) for v in verdicts) == 2  # once per task
    assert "chance (0.500)" in findings and "simulated data" in findings
    assert "| evaluation |" in report
