"""Collect `brainjepa evaluate` outputs of the recipe study into one Markdown table (issue 11).

    python benchmarks/recipe_table.py runs/study/eval/tiny45_base runs/study/eval/tiny45_roi ...

One row per evaluate folder (its name, and the settings its evaluate.md states), one column group per task: the
pretrained encoder's score, its difference to random init and to the best FC baseline, each with the suite's 95%
subject-level bootstrap interval; a difference whose interval excludes 0 is marked with * . The last lines count,
per setting, the tasks where pretrained > random init and pretrained >= best FC (interval not below 0), from the
same numbers.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

# what evaluate.md says of the encoder rows: head, pooling, layer, windows, normalisation, encoder
SETTINGS = re.compile(r"encoder rows: (\w+) head on `(\w+)` pooling, layer (-?\d+), (\d+) window\(s\), "
                      r"normalisation `(\w+)`, (\w+) encoder")


def _read(folder: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(folder / "evaluate.csv", newline="") as f:
        return {(r["task"], r["row"]): r for r in csv.DictReader(f) if r["status"] == "done"}


def _settings(folder: Path) -> str:
    found = SETTINGS.search((folder / "evaluate.md").read_text())
    if not found:
        return "?"
    head, pooling, layer, windows, norm, encoder = found.groups()
    return f"{head}, {pooling}, layer {layer}, {windows} win, {norm}, {encoder}"


def _fmt(r: dict[str, str], signed: bool) -> str:
    mean, low, high = float(r["mean"]), float(r["ci_low"]), float(r["ci_high"])
    star = "*" if signed and (low > 0 or high < 0) else ""
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(mean)}{star} [{f.format(low)}, {f.format(high)}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="evaluate --out folders, one per setting")
    args = ap.parse_args()
    folders = {folder.name: folder for folder in args.folders}
    results = {name: _read(folder) for name, folder in folders.items()}
    tasks = sorted({task for rows in results.values() for task, _ in rows})
    columns = ("pretrained", "- random", "- best FC")
    head = ["run", "head, pooling, layer, windows, normalisation, encoder"]
    head += [f"{t.split('/')[-1]}: {col}" for t in tasks for col in columns]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    wins = {}
    for name, rows in results.items():
        cells, beat_random, match_fc = [name, _settings(folders[name])], 0, 0
        for t in tasks:
            score, rnd, fc = rows.get((t, "brainjepa")), rows.get((t, "brainjepa - random-init")), \
                rows.get((t, "brainjepa - best FC"))
            cells += [_fmt(score, False) if score else "-", _fmt(rnd, True) if rnd else "-",
                      _fmt(fc, True) if fc else "-"]
            beat_random += bool(rnd and float(rnd["ci_low"]) > 0)
            match_fc += bool(fc and float(fc["ci_high"]) >= 0)
        wins[name] = (beat_random, match_fc)
        print("| " + " | ".join(cells) + " |")
    print()
    for name, (beat_random, match_fc) in wins.items():
        print(f"- {name}: pretrained > random init (interval above 0) on {beat_random} of {len(tasks)} tasks; "
              f"pretrained not below the best FC baseline (interval reaches 0 or above) on {match_fc} of {len(tasks)}")


if __name__ == "__main__":
    main()
