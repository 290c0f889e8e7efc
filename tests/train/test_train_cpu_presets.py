"""The `cpu` preset of the hybrid recipe trains from the command line on generated
Pathfinder (contour length 6) and ends clearly above chance (50%).

Mega's `cpu` preset is not here: it learns (88.09% val / 89.45% test on 2026-12-06,
in `docs/results.md`), but its full attention over 1,024 positions takes 10–15
minutes on two CPU cores, more than the slow tier can spend on one run."""

import json

import pytest

from seqkit import cli


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spade"])
def test_cpu_preset_learns_pathfinder(name, tmp_path, capsys, optimized):
    out = tmp_path / name
    assert cli.main(["train", name, "--preset", "cpu", "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"{name} (cpu): val accuracy")
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 400 and res["skipped_updates"] == 0
    # 512 examples per split: chance is 0.50 ± 0.022, so 0.65 is far outside it.
    assert res["val_accuracy"] > 0.65 and res["test_accuracy"] > 0.65, res
