"""The README's main job: `echodfkd demo --quick` runs the whole method and reports measured figures."""

from __future__ import annotations

import json

import pytest

from echodfkd.cli import main
from echodfkd.io.records import PredictionsMeta, StepsJournal


@pytest.mark.slow
def test_quick_demo_end_to_end_and_rerun_reuses_steps(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and str(out / "report.md") in printed

    metrics = json.loads((out / "metrics.json").read_text())
    steps = ("phantom_dynamic", "phantom_synthetic", "check", "teacher", "label", "distill", "alert",
             "predict", "teacher_predict", "evaluate")
    assert all(metrics["step_seconds"][s] > 0 for s in steps)
    # Trained, not stubbed: both models must actually segment the phantom's LV against the tracings.
    teacher = metrics["teacher"]["segmentation"]["vs_tracings"]["overall"]["dice_per_video_mean"]
    student = metrics["student"]["segmentation"]["vs_tracings"]["overall"]["dice_per_video_mean"]
    assert teacher > 0.75, teacher
    assert student > 0.5, student
    afd = metrics["student"]["afd"]["full"]
    assert afd["n_clips"] >= 5 and afd["aFD_ED"] < 20 and afd["aFD_ES"] < 20
    assert metrics["steps"]["distill"]["params"] == 714_577
    # The step summaries come from the typed records the steps wrote (the keys predict_to_folder and distill use).
    distilled = metrics["steps"]["distill"]
    assert distilled["epochs_trained"] >= 1 and distilled["best_val_loss"] > 0 and distilled["frame_size"] == 56
    predicted = metrics["steps"]["predict"]
    meta = PredictionsMeta.read(out / "predictions" / "student")
    assert predicted == meta.summary() and predicted["clips"] == metrics["student"]["n_clips"] >= 5
    assert predicted["streamed_frames"] > 0 and predicted["stream_fps"] > 0 and predicted["failed"] == 0
    journal = StepsJournal.read(out)
    assert set(journal.steps["evaluate"].depends_on) == {"check", "predict", "teacher_predict"} and not journal.stale
    assert main(["check-run", str(out)]) == 0
    report = (out / "report.md").read_text()
    for heading in ("Table 1 style", "Table 2 style", "Time per step", "EchoCLIP", "Unusual-input alert"):
        assert heading in report
    assert "--echoclip" in report  # says how to enable the skipped step
    assert list((out / "figures").glob("*.png"))

    # A rerun reuses every finished step and writes the same headline figures.
    assert main(["demo", "--out", str(out), "--quick", "--workers", "1"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["student"]["segmentation"] == metrics["student"]["segmentation"]
    assert "reusing" in capsys.readouterr().err
