"""sweep -> report in one step: `sweep --evaluate` predicts and evaluates each run; report names what is missing."""

from __future__ import annotations

import json

import pytest

from distill_data import make_dataset
from echodfkd.cli import main

SPLITS = ["TRAIN"] * 3 + ["VAL"] * 2 + ["TEST"] * 2
TINY = ["--blocks", "1-2", "--layers", "1", "--epochs", "1", "--seq-len", "6", "--batch-size", "2",
        "--frame-size", "32"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sweep_evaluate_then_report(tmp_path, capsys):
    data, targets = make_dataset(tmp_path, SPLITS, frames=16)
    out, report = tmp_path / "sweep", tmp_path / "report"
    base = ["sweep", "--data", str(data), "--targets", str(targets), "--out", str(out), *TINY]

    assert main(base) == 0  # trained, not evaluated: report says which step is missing
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(report)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 trained run(s) but none evaluated" in err
    assert "echodfkd sweep --evaluate" in err

    assert main([*base, "--evaluate", "--bootstrap", "50"]) == 0  # evaluates the runs trained before
    text = capsys.readouterr().out
    assert "b1_l1: evaluated 2 TEST clips" in text and "echodfkd report" in text
    for run in ("b1_l1", "b2_l1"):
        metrics = json.loads((out / run / "evaluation" / "metrics.json").read_text())
        assert metrics["n_clips"] == 2 and (out / run / "predictions" / "clip05.npz").is_file()
        assert 0 <= metrics["segmentation"]["vs_teacher"]["dice_pooled"] <= 1  # --targets holds TEST
    stamp = (out / "b1_l1" / "evaluation" / "metrics.json").stat().st_mtime_ns

    assert main(["report", str(out), "--out", str(report)]) == 0
    sweep = json.loads((report / "sweep.json").read_text())
    assert [r["run"] for r in sweep["runs"]] == ["b1_l1", "b2_l1"] and sweep["unevaluated"] == []
    assert all(r["dice"] is not None for r in sweep["runs"]) and (report / "report.md").is_file()

    assert main([*base, "--evaluate", "--bootstrap", "50"]) == 0  # nothing new: evaluations kept
    assert (out / "b1_l1" / "evaluation" / "metrics.json").stat().st_mtime_ns == stamp


def test_report_names_runs_left_out(tmp_path, capsys):
    data, targets = make_dataset(tmp_path, SPLITS, frames=16)
    out, report = tmp_path / "sweep", tmp_path / "report"
    base = ["sweep", "--data", str(data), "--targets", str(targets), "--out", str(out), *TINY]
    assert main([*base, "--blocks", "1", "--evaluate", "--bootstrap", "20"]) == 0
    assert main([*base, "--blocks", "2"]) == 0  # a second run, not evaluated
    assert main(["report", str(out), "--out", str(report)]) == 0
    assert json.loads((report / "sweep.json").read_text())["unevaluated"] == ["b2_l1"]
    assert "trained but not evaluated (no metrics.json): b2_l1" in (report / "report.md").read_text()


def test_sweep_evaluate_refuses_an_empty_split_before_training(tmp_path, capsys):
    data, targets = make_dataset(tmp_path, SPLITS[:5], frames=16)
    out = tmp_path / "sweep"
    rc = main(["sweep", "--data", str(data), "--targets", str(targets), "--out", str(out), *TINY, "--evaluate"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no clip in split TEST for --evaluate" in err and not out.exists()


def test_sweep_help_says_what_report_needs(capsys):
    assert main(["sweep", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--evaluate" in text and "RUN/evaluation/metrics.json" in text and "echodfkd report SWEEP" in text
