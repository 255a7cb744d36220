"""Typed records between steps (config.json, meta.json, metrics.json, steps.json) and `echodfkd check-run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from echodfkd.cli import main
from echodfkd.io.records import (DemoMetrics, EvaluationMetrics, PredictionsMeta, RecordError, StepsJournal,
                                 StudentConfig, TargetsMeta, overall, read_folder_meta)
from echodfkd.models import Student
from echodfkd.pipeline import Step, StepRunner, bind

SEG = {"n_videos": 2, "n_frames": 4, "dice_per_video_mean": 0.9, "dice_per_video_mean_ci90": [0.8, 0.95],
       "dice_pooled": 0.91, "dice_pooled_ci90": [0.85, 0.96], "iou_per_video_mean": 0.8,
       "iou_per_video_mean_ci90": [0.7, 0.9], "iou_pooled": 0.82, "iou_pooled_ci90": [0.72, 0.9]}


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    """A saved 2-block student run with calibrated thresholds and a training summary."""
    out = tmp_path / "run"
    Student(blocks=2, filters=4).eval().save_pretrained(out, extra_config={
        "status": "done", "thresholds": {"dice": 0.45, "afd": 0.6}, "infer_size": 32,
        "training": {"frame_size": 32, "epochs_trained": 3, "best_val_loss": 0.5, "max_time": "00:00:01:00"},
        "stream": {"warmup": 0, "largest_component": True}})
    return out


def _edit(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------------- readers and writers
def test_config_round_trip_keeps_every_key_and_stamps_the_format(run):
    on_disk = json.loads((run / "config.json").read_text())
    assert on_disk["format"] == "echodfkd.student-config" and on_disk["version"] == StudentConfig.VERSION
    cfg = StudentConfig.read(run)
    assert (cfg.blocks, cfg.filters, cfg.thresholds.afd, cfg.training.epochs_trained) == (2, 4, 0.6, 3)
    assert cfg.training.extra["max_time"] == "00:00:01:00"  # untyped keys are kept, not dropped
    cfg.write(run / "copy.json")
    assert json.loads((run / "copy.json").read_text()) == on_disk
    assert cfg.run_summary()["epochs_trained"] == 3 and cfg.run_summary()["frame_size"] == 32


def test_every_record_round_trips(tmp_path):
    records = [
        PredictionsMeta.parse({"threshold_dice": 0.4, "threshold_afd": 0.5, "thresholds_rv": None, "status": "done",
                               "clips": 3, "flagged": ["a"], "failed": {}, "streamed_frames": 90,
                               "stream_fps": 120.5, "onnx": None}),
        TargetsMeta.parse({"format": "echodfkd-teacher-targets", "version": 1,
                           "channels": {"masks": {"arch": "x", "weights_hash": "ab"}}}),
        EvaluationMetrics.parse({"n_clips": 2, "segmentation": {"vs_tracings": {"overall": SEG}}, "figures": []}),
        StepsJournal.parse({"format": "echodfkd.steps", "version": 1,
                            "steps": {"a": {"seconds": 1.5, "summary": {"n": 1}, "depends_on": [], "outputs": []}},
                            "stale": []}),
    ]
    for i, record in enumerate(records):
        path = record.write(tmp_path / f"{i}.json")
        again = type(record).read(path)
        assert again.to_dict() == record.to_dict() and again.version == type(record).VERSION
    assert records[0].to_dict()["onnx"] is None and records[0].to_dict()["thresholds_rv"] is None


def test_version_0_files_load_and_migrate_in_memory(tmp_path):
    (tmp_path / "steps.json").write_text(json.dumps({"check": {"seconds": 2.0, "summary": {"videos": 4}}}))
    journal = StepsJournal.read(tmp_path)
    assert journal.version == 0 and journal.steps["check"].summary == {"videos": 4}
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "meta.json").write_text(json.dumps({"teacher": {"arch": "deeplabv3_resnet50", "weights_hash": "ab"}}))
    meta = read_folder_meta(targets)
    assert isinstance(meta, TargetsMeta) and meta.version == 0
    assert meta.channels["masks"]["arch"] == "deeplabv3_resnet50"
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "meta.json").write_text(json.dumps({"threshold_dice": 0.5, "threshold_afd": 0.7}))
    assert isinstance(read_folder_meta(pred), PredictionsMeta)
    # A config written before records: no format, no version, no architecture (sweep summaries).
    (tmp_path / "config.json").write_text(json.dumps({"blocks": 2, "layers": 1, "params": 100}))
    assert StudentConfig.read(tmp_path / "config.json").version == 0


def test_overall_is_defined_once_for_nested_and_flat_blocks():
    assert overall({"overall": SEG, "ED": {}, "note": "x"}) is SEG
    assert overall(SEG) is SEG and overall(None) == {}
    m = EvaluationMetrics.parse({"segmentation": {"vs_tracings": {"overall": SEG}, "vs_teacher": SEG}})
    assert m.overall("vs_tracings") == m.overall("vs_teacher") == SEG and m.overall("vs_ground_truth") == {}


@pytest.mark.parametrize("field, value, message", [
    ("blocks", "four", "blocks must be an integer, got 'four'"),
    ("skip", 1, "skip must be true or false, got 1"),
    ("thresholds", {"dice": 1.5, "afd": 0.5}, "thresholds.dice must be a number in [0, 1], got 1.5"),
    ("training", {"epochs_trained": "3"}, "training.epochs_trained must be an integer, got '3'"),
    ("infer_size", 0, "infer_size must be a number >= 1, got 0"),
    ("version", 99, "version 99 of echodfkd.student-config is newer than this release reads"),
])
def test_wrong_types_are_one_line_naming_the_file_and_field(run, field, value, message):
    _edit(run / "config.json", **{field: value})
    with pytest.raises(RecordError) as err:
        StudentConfig.read(run)
    text = str(err.value)
    assert text.startswith(f"{run / 'config.json'}: {message}") and "\n" not in text


def test_a_mistyped_config_is_one_line_in_the_commands_that_load_it(run, capsys):
    from echodfkd.stream import Predictor

    _edit(run / "config.json", blocks="four")
    with pytest.raises(RecordError, match="blocks must be an integer, got 'four'"):
        Predictor.from_run(run)
    assert main(["export", "--student", str(run), "--check-frames", "0"]) != 0
    err = capsys.readouterr().err.strip()
    assert "config.json: blocks must be an integer, got 'four'" in err and len(err.splitlines()) == 1
    assert not (run / "student.onnx").exists()


def test_predictor_from_run_takes_options_and_reads_the_config_once(run, monkeypatch):
    from echodfkd.stream import Predictor
    from echodfkd.stream.predictor import PredictorOptions

    reads = []
    real = StudentConfig.read
    monkeypatch.setattr(StudentConfig, "read", classmethod(lambda cls, p: reads.append(p) or real.__func__(cls, p)))
    p = Predictor.from_run(run, PredictorOptions(warmup=2), threshold=0.3)
    assert len(reads) == 1
    assert (p.warmup, p.thresholds, p.size, p.largest_component) == (2, {"dice": 0.3, "afd": 0.3}, (32, 32), True)
    assert Predictor(run).thresholds == {"dice": 0.45, "afd": 0.6} and Predictor(run).record.blocks == 2


# ---------------------------------------------------------------------- the step runner's journal
def test_a_rerun_step_leaves_its_dependents_stale_even_when_the_run_stops_there(tmp_path):
    calls: list[str] = []
    later = tmp_path / "later"

    def declared(fail_b: bool = False) -> list[Step]:
        def a():
            calls.append("a")
            (tmp_path / "a.txt").write_text("x")

        def b():
            calls.append("b")
            if fail_b:
                raise RuntimeError("stopped")
            later.mkdir(exist_ok=True)
            stale = (later / "out.txt").exists()
            (later / "out.txt").write_text("x")
            return {"saw_stale": stale}

        steps = [Step("a", "first", (), (tmp_path / "a.txt",)), Step("b", "second", ("a",), (later / "out.txt",),
                                                                     (later,))]
        return bind(steps, {"a": a, "b": b})

    StepRunner(tmp_path, echo=lambda m: None).run_all(declared())
    (tmp_path / "a.txt").unlink()
    with pytest.raises(RuntimeError):
        StepRunner(tmp_path, echo=lambda m: None).run_all(declared(fail_b=True))
    assert StepsJournal.read(tmp_path).stale == ["b"]
    # The next run reuses a (its output is back) but still reruns b, with its folder cleared first.
    summaries = StepRunner(tmp_path, echo=lambda m: None).run_all(declared())
    assert calls == ["a", "b", "a", "b", "b"] and summaries["b"] == {"saw_stale": False}
    journal = StepsJournal.read(tmp_path)
    assert journal.stale == [] and journal.steps["b"].depends_on == ["a"]
    assert journal.steps["b"].outputs == ["later/out.txt"]


def test_a_step_that_changed_nothing_does_not_force_its_dependents(tmp_path):
    calls: list[str] = []
    steps = [Step("a", "first"), Step("b", "second", ("a",))]

    def go(changed: bool) -> None:
        runner = StepRunner(tmp_path, echo=lambda m: None)
        runner.journal.steps.pop("a", None)  # as if a's record had been lost
        runner.run_all(bind(steps, {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                            changed={"a": lambda s: changed}))

    go(changed=True)
    go(changed=False)
    assert calls == ["a", "b", "a"]
    go(changed=True)
    assert calls == ["a", "b", "a", "a", "b"]


def test_steps_must_depend_on_steps_declared_before_them(tmp_path):
    with pytest.raises(ValueError, match="not declared before"):
        StepRunner(tmp_path, echo=lambda m: None).run_all(bind([Step("b", "b", ("a",))], {"b": lambda: None}))
    with pytest.raises(ValueError, match="without a function"):
        bind([Step("a", "a")], {})


# ---------------------------------------------------------------------- check-run
def _good_folder(tmp_path: Path, run: Path) -> Path:
    """A demo-like folder: a run, predictions with a copied config, an evaluation and a steps journal."""
    root = tmp_path / "demo"
    root.mkdir()
    run.rename(root / "student")
    pred = root / "predictions"
    pred.mkdir()
    PredictionsMeta.parse({"threshold_dice": 0.5, "threshold_afd": 0.5, "status": "done", "clips": 1}).write(pred)
    for name in ("areas.csv", "phases.json", "alerts.csv"):
        (pred / name).write_text("x")
    StudentConfig.read(root / "student").write(pred / "config.json")
    ev = root / "evaluation"
    (ev / "figures").mkdir(parents=True)
    (ev / "figures" / "a.png").write_bytes(b"png")
    EvaluationMetrics.parse({"n_clips": 1, "segmentation": {"vs_tracings": {"overall": SEG}},
                             "figures": ["figures/a.png"]}).write(ev)
    runner = StepRunner(root, echo=lambda m: None)
    runner.run_all(bind([Step("distill", "d", (), (root / "student" / "config.json",))], {"distill": dict}))
    DemoMetrics.parse({"steps": {"distill": {}}, "student": EvaluationMetrics.read(ev).to_dict()}).write(root)
    return root


def _check(root: Path, capsys) -> tuple[int, list[str]]:
    code = main(["check-run", str(root)])
    return code, capsys.readouterr().out.strip().splitlines()


def test_check_run_passes_a_good_folder(tmp_path, run, capsys):
    root = _good_folder(tmp_path, run)
    code, lines = _check(root, capsys)
    assert code == 0, lines
    assert sum(line.startswith("OK ") for line in lines) == 6 and lines[-1] == "6 record(s), 0 with a problem"
    assert main(["check-run", str(root), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert {f["format"] for f in found} == {"echodfkd.student-config", "echodfkd.predictions", "echodfkd.evaluation",
                                             "echodfkd.steps", "echodfkd.demo"}


@pytest.mark.parametrize("damage, record, problem", [
    (lambda r: (r / "student" / "model.safetensors").unlink(), "student/config.json", "model.safetensors is missing"),
    (lambda r: _edit(r / "student" / "config.json", blocks="four"), "student/config.json",
     "blocks must be an integer, got 'four'"),
    (lambda r: _edit(r / "evaluation" / "metrics.json", version=7), "evaluation/metrics.json",
     "version 7 of echodfkd.evaluation is newer"),
    (lambda r: _edit(r / "predictions" / "meta.json", format="echodfkd.something-else"), "predictions/meta.json",
     "format is 'echodfkd.something-else'"),
    (lambda r: (r / "student" / "model.safetensors").write_bytes(b"other"), "student/config.json",
     "does not match the SHA-256"),
    (lambda r: (r / "evaluation" / "figures" / "a.png").unlink(), "evaluation/metrics.json",
     "1 listed file(s) missing, first figures/a.png"),
])
def test_check_run_names_each_broken_record_in_one_line(tmp_path, run, capsys, damage, record, problem):
    root = _good_folder(tmp_path, run)
    damage(root)
    code, lines = _check(root, capsys)
    bad = [line for line in lines if line.startswith("PROBLEM")]
    assert code == 1 and len(bad) == 1, lines
    assert bad[0].startswith(f"PROBLEM  {root / record}: ") and problem in bad[0]


def test_check_run_on_a_missing_or_empty_folder_is_one_line(tmp_path, capsys):
    assert main(["check-run", str(tmp_path / "nope")]) != 0
    assert main(["check-run", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not found" in err[0] and "no config.json" in err[1]


def test_check_run_names_a_finished_step_whose_output_vanished(tmp_path, run, capsys):
    root = _good_folder(tmp_path, run)
    (root / "student" / "config.json").unlink()
    code, lines = _check(root, capsys)
    assert code == 1 and any(line.startswith(f"PROBLEM  {root / 'steps.json'}: step distill is recorded as finished "
                                             f"but its output student/config.json is missing") for line in lines)


def test_metrics_files_are_told_apart_by_format_or_keys(tmp_path):
    from echodfkd.io.records import CamusMetrics, ReproduceMetrics, metrics_record

    cases = {"evaluation": ({"n_clips": 1, "segmentation": {}}, EvaluationMetrics),
             "demo": ({"steps": {}, "step_seconds": {}}, DemoMetrics),
             "reproduce": ({"format": "echodfkd-reproduce", "version": 1, "students": {}}, ReproduceMetrics),
             "camus": ({"student": {"name": "b4_l1"}, "table3_row": {}}, CamusMetrics)}
    for name, (data, cls) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        assert metrics_record(path) is cls, name
    (tmp_path / "other.json").write_text(json.dumps({"format": "someone-else", "version": 1}))
    with pytest.raises(RecordError, match="format 'someone-else' is not a metrics record"):
        metrics_record(tmp_path / "other.json")


def test_check_run_teacher_hash_compares_the_checkpoint_with_the_targets_record(tmp_path, capsys):
    import torch

    from echodfkd.teacher.model import Teacher, build_segmenter, save_echonet_checkpoint, weights_hash

    torch.manual_seed(0)
    arch = "lraspp_mobilenet_v3_large"
    teacher = Teacher(build_segmenter(arch), arch=arch).eval()
    ckpt = save_echonet_checkpoint(teacher, tmp_path / "teacher.pt")
    targets = tmp_path / "targets"
    targets.mkdir()
    record = {"arch": arch, "weights_hash": weights_hash(teacher), "source": str(ckpt)}
    TargetsMeta.parse({"channels": {"masks": record}, "teacher": record}).write(targets)
    assert main(["check-run", str(targets), "--teacher-hash"]) == 0
    capsys.readouterr()
    TargetsMeta.parse({"channels": {"masks": dict(record, weights_hash="0" * 64)}}).write(targets)
    assert main(["check-run", str(targets)]) == 0  # without the flag the checkpoint is not opened
    assert main(["check-run", str(targets), "--teacher-hash"]) == 1
    bad = [line for line in capsys.readouterr().out.splitlines() if line.startswith("PROBLEM")]
    assert len(bad) == 1 and f"channel masks: {ckpt} no longer has the weights recorded" in bad[0]
