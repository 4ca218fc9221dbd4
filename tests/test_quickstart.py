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
    for figure in ("gradients", "masks", "training_curves", "pca"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 5000
        assert f"figures/{figure}.png" in report
    for row in ("Brain-JEPA (pretrained)", "Brain-JEPA (random init)", "FC (Fisher z)"):
        assert f"| {row} |" in report
    # The findings are computed from the fold-level scores (tests/test_report.py checks the derivation): every
    # pair of rows is classified as differing or not, and a simulated run says so.
    findings = report[report.index("## 7. Findings"):]
    pairs = [("Brain-JEPA (pretrained)", "Brain-JEPA (random init)"), ("Brain-JEPA (pretrained)", "FC (Fisher z)"),
             ("Brain-JEPA (random init)", "FC (Fisher z)")]
    for a, b in pairs:
        assert sum(s in findings for s in (f"{a} and {b} do not differ", f"**{a} scores higher than {b}**",
                                           f"**{b} scores higher than {a}**")) == 1
    assert "chance (0.500)" in findings and "simulated data" in findings
    facts = json.loads((out / "facts.json").read_text())
    assert facts["runs"] == 120 and facts["label"] == "group"
    assert (out / "probe.csv").is_file()
