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
    assert "Encoder health (input `roi_zscore` x gain" in report and "held-out subject(s)" in report
    facts = json.loads((out / "facts.json").read_text())
    assert facts["runs"] == 120 and facts["label"] == "group"
    assert facts["suite"]["tasks"] == ["simulation/group", "simulation/coupling"]
    assert (facts["suite"]["folds"], facts["suite"]["seeds"]) == (2, 1)
    table = (out / "evaluate" / "evaluate.md").read_text()
    header = "| row | simulation/group | simulation/coupling |"
    rows = [line for line in table.splitlines() if line.startswith("| brainjepa, ")]
    assert header in report and len(rows) == 8 and all(row in report for row in rows)  # scores, nulls, differences
    assert f"--store simulation={out / 'store'}" in report
    assert not (out / "evaluate" / "stores").exists()
    findings = report[report.index("## 7. Findings"):report.index("## 8. Time")]
    for task in ("simulation/group", "simulation/coupling"):
        assert f"**{task}**" in findings
    for readout in ("ROI mean", "token FC"):
        for other in (f"random-init, {readout}", "FC"):
            row = f"brainjepa, {readout}"
            verdicts = (f"{row} and {other} do not differ", f"**{row} scores higher than {other}**",
                        f"**{row} scores lower than {other}**", f"{row} vs {other}: difference")
            assert sum(findings.count(v) for v in verdicts) == 2  # once per task
    assert "nominal chance 0.500" in findings and "simulated data" in findings
    assert "| evaluation |" in report
