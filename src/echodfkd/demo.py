"""`echodfkd demo`: the whole EchoDFKD method end to end on the embedded phantom, resumable, timed.

phantom (dynamic + synthetic) -> check -> teacher trained on traced frames -> label synthetic clips ->
distil a (4,1) student -> calibrate the unusual-input alert -> predict + label the dynamic TEST split ->
evaluate student and teacher -> optional EchoCLIP -> report.md + metrics.json + figures.
"""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from echodfkd.io.records import EvaluationMetrics, PredictionsMeta, StudentConfig, TargetsMeta
from echodfkd.pipeline import Step, StepRunner


ALERT_CALIBRATION_CLIPS = 16  # clean VAL clips used to set the alert threshold


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and budgets of one demo run (chosen to fit a 2-core CPU)."""

    dynamic_videos: int
    dynamic_frames: int | None     # None: EchoNet-like lengths (28 to ~300 frames)
    synthetic_videos: int
    synthetic_frames: int | None   # None: the synthetic style's 192 frames
    corrupt: float
    teacher_arch: str
    teacher_epochs: int
    teacher_seconds: float | None  # wall-clock cap (None: epochs only)
    teacher_truth_every: int | None  # train the teacher on every K-th frame's exact mask (None: traced frames)
    distill_epochs: int
    distill_seconds: float | None
    frame_size: int                # distillation and inference frame size (the reference trained at 56)
    seq_len: int
    batch_size: int
    clips_per_epoch: int | None    # windows drawn per epoch (None: one per training clip)
    patience: int                  # early-stopping patience in epochs (the reference: 10)
    seed: int = 0


FULL = DemoSettings(dynamic_videos=160, dynamic_frames=None, synthetic_videos=96, synthetic_frames=None, corrupt=0.1,
                    teacher_arch="lraspp_mobilenet_v3_large", teacher_epochs=15, teacher_seconds=110,
                    teacher_truth_every=8,
                    distill_epochs=300, distill_seconds=280, frame_size=56, seq_len=25, batch_size=8,
                    clips_per_epoch=None, patience=20)
# Quick runs are bounded by epochs, not seconds, so a slow or busy machine gets the same model (later).
QUICK = DemoSettings(dynamic_videos=64, dynamic_frames=64, synthetic_videos=16, synthetic_frames=64,
                     corrupt=0.1, teacher_arch="lraspp_mobilenet_v3_large", teacher_epochs=14,
                     teacher_seconds=None, teacher_truth_every=None, distill_epochs=8, distill_seconds=None, frame_size=56, seq_len=8,
                     batch_size=8, clips_per_epoch=64, patience=100)


def run_demo(out: str | os.PathLike, quick: bool = False, workers: int | None = None,
             echoclip: str | None = None, teacher_arch: str | None = None, seed: int = 0,
             echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the demo into `out`; returns the metrics written to `out/metrics.json`."""
    from echodfkd.report.demo import write_demo_report

    out = Path(out)
    settings = QUICK if quick else FULL
    settings = replace(settings, seed=seed, teacher_arch=teacher_arch or settings.teacher_arch)
    runner = StepRunner(out, echo=echo)
    paths = _paths(out)
    steps = _Steps(settings, paths, workers)
    runner.run_all(declare_steps(settings, paths, steps, echoclip))
    if not echoclip:
        runner.skip("echoclip", "no --echoclip MODEL given")
    return write_demo_report(out, asdict(settings), runner, paths, echoclip)


def declare_steps(settings: DemoSettings, p: dict[str, Path], steps: "_Steps", echoclip: str | None) -> list[Step]:
    """The demo's steps in order: what each reads, the outputs that prove it finished, the folders it rewrites."""
    teacher_on = (f"exact masks of every {settings.teacher_truth_every}th TRAIN frame" if settings.teacher_truth_every
                  else "traced TRAIN frames")
    declared = [
        Step("phantom_dynamic", f"dynamic phantom: {settings.dynamic_videos} clips with tracings", (),
             (p["dynamic"] / "FileList.csv",), fn=steps.phantom_dynamic),
        Step("phantom_synthetic", f"synthetic phantom: {settings.synthetic_videos} clips, no tracings", (),
             (p["synthetic"] / "FileList.csv",), fn=steps.phantom_synthetic),
        Step("check", "check the dynamic set (corrupted.csv)", ("phantom_dynamic",), (p["corrupted"],), fn=steps.check),
        Step("teacher", f"train a {settings.teacher_arch} teacher on the {teacher_on}", ("phantom_dynamic",),
             (p["teacher"],), (p["teacher"].parent,), fn=steps.teacher),
        Step("label", "label the synthetic TRAIN/VAL clips with the teacher", ("phantom_synthetic", "teacher"),
             (p["targets"] / TargetsMeta.FILE,), (p["targets"],), fn=steps.label),
        Step("distill", f"distil a (4,1) student at {settings.frame_size}x{settings.frame_size}",
             ("phantom_synthetic", "label"), (p["student"] / "model.safetensors",), (p["student"],), fn=steps.distill),
        Step("alert", "calibrate the unusual-input alert on clean dynamic VAL clips", ("phantom_dynamic", "distill"),
             (p["student"] / "alert.json",), fn=steps.alert),
        Step("predict", "student: stream the dynamic TEST clips frame by frame", ("phantom_dynamic", "alert"),
             (p["pred_student"] / PredictionsMeta.FILE,), (p["pred_student"],), fn=steps.predict),
        Step("teacher_predict", "teacher: label the dynamic TEST clips", ("phantom_dynamic", "teacher"),
             (p["pred_teacher"] / TargetsMeta.FILE,), (p["pred_teacher"],), fn=steps.teacher_predict),
        Step("evaluate", "evaluate student and teacher on the dynamic TEST split",
             ("check", "predict", "teacher_predict"),
             (p["eval_student"] / EvaluationMetrics.FILE, p["eval_teacher"] / EvaluationMetrics.FILE),
             (p["eval_student"], p["eval_teacher"]), fn=steps.evaluate),
    ]
    if echoclip:
        declared.append(Step("echoclip", f"EchoCLIP ({echoclip}) judges masks and phases",
                             ("predict", "teacher_predict"),
                             (p["echoclip"] / "echoclip.json",), (p["echoclip"],), fn=lambda: steps.echoclip(echoclip)))
    return declared


def _paths(out: Path) -> dict[str, Path]:
    return {
        "dynamic": out / "data" / "dynamic", "synthetic": out / "data" / "synthetic",
        "corrupted": out / "data" / "dynamic_corrupted.csv", "teacher": out / "teacher" / "teacher.pt",
        "targets": out / "targets", "student": out / "student",
        "pred_student": out / "predictions" / "student", "pred_teacher": out / "predictions" / "teacher",
        "eval_student": out / "evaluation" / "student", "eval_teacher": out / "evaluation" / "teacher",
        "echoclip": out / "echoclip",
    }


class _Steps:
    """The demo's steps; each returns a small JSON-able summary for steps.json and the report."""

    def __init__(self, settings: DemoSettings, paths: dict[str, Path], workers: int | None) -> None:
        self.s, self.p, self.workers = settings, paths, workers

    def phantom_dynamic(self) -> dict[str, Any]:
        from echodfkd.data.phantom import generate_phantom

        generate_phantom(self.p["dynamic"], self.s.dynamic_videos, "dynamic", seed=self.s.seed,
                         corrupt=self.s.corrupt, frames=self.s.dynamic_frames, workers=self.workers)
        return _dataset_summary(self.p["dynamic"])

    def phantom_synthetic(self) -> dict[str, Any]:
        from echodfkd.data.phantom import generate_phantom

        generate_phantom(self.p["synthetic"], self.s.synthetic_videos, "synthetic", seed=self.s.seed + 1,
                         frames=self.s.synthetic_frames, workers=self.workers)
        return _dataset_summary(self.p["synthetic"])

    def check(self) -> dict[str, Any]:
        from echodfkd.data.check import check_dataset

        report = check_dataset(self.p["dynamic"], workers=self.workers or 1)
        report.to_csv(self.p["corrupted"])
        return {"videos": report.videos, "flagged_clips": len(report.problem_clips), "by_reason": report.by_reason()}

    def teacher(self) -> dict[str, Any]:
        from echodfkd.teacher.train import train_teacher

        r = train_teacher(self.p["dynamic"], self.s.teacher_arch, self.p["teacher"], epochs=self.s.teacher_epochs,
                          max_seconds=self.s.teacher_seconds, seed=self.s.seed, truth_every=self.s.teacher_truth_every)
        return {"arch": r.arch, "best_epoch": r.best_epoch, "epochs_run": len(r.history),
                "best_val_dice": r.best_val_dice, "train_frames": r.train_frames, "val_frames": r.val_frames}

    def label(self) -> dict[str, Any]:
        from echodfkd.distill.label import label_dataset

        r = label_dataset(self.p["synthetic"], self.p["teacher"], self.p["targets"], splits=("TRAIN", "VAL"))
        return r.as_dict()

    def distill(self) -> dict[str, Any]:
        from echodfkd.distill.train import distill

        run = distill(self.p["synthetic"], self.p["targets"], self.p["student"], blocks=4, layers=1,
                      epochs=self.s.distill_epochs, frame_size=self.s.frame_size, seq_len=self.s.seq_len,
                      batch_size=self.s.batch_size, max_time=self.s.distill_seconds, seed=self.s.seed,
                      infer_size=self.s.frame_size, clips_per_epoch=self.s.clips_per_epoch,
                      patience=self.s.patience)
        return StudentConfig.read(run).run_summary()

    def alert(self) -> dict[str, Any]:
        from echodfkd.stream import Predictor
        from echodfkd.stream.batch import clean_clips

        predictor = Predictor.from_run(self.p["student"])
        clips = itertools.islice(clean_clips(self.p["dynamic"], "VAL"), ALERT_CALIBRATION_CLIPS)
        cfg = predictor.calibrate_alert(clips, false_alarm_rate=0.05, augment=1.0)
        return {"threshold": cfg.threshold, "false_alarm_rate_target": 0.05, "augmented_copies": True}

    def predict(self) -> dict[str, Any]:
        from echodfkd.stream import Predictor
        from echodfkd.stream.batch import find_clips, predict_to_folder

        meta = predict_to_folder(Predictor.from_run(self.p["student"]), find_clips(self.p["dynamic"], "TEST"),
                                 self.p["pred_student"], echo=lambda m: None)
        return PredictionsMeta.parse(meta, self.p["pred_student"] / PredictionsMeta.FILE).summary()

    def teacher_predict(self) -> dict[str, Any]:
        from echodfkd.distill.label import label_dataset

        return label_dataset(self.p["dynamic"], self.p["teacher"], self.p["pred_teacher"], splits=("TEST",)).as_dict()

    def evaluate(self) -> dict[str, Any]:
        from echodfkd.report.evaluation import evaluate_predictions

        evaluate_predictions(self.p["dynamic"], self.p["pred_student"], "TEST", teacher_dir=self.p["pred_teacher"],
                             corrupted=self.p["corrupted"], out=self.p["eval_student"], n_boot=2000)
        evaluate_predictions(self.p["dynamic"], self.p["pred_teacher"], "TEST", corrupted=self.p["corrupted"],
                             out=self.p["eval_teacher"], n_boot=2000)
        return {}

    def echoclip(self, model: str) -> dict[str, Any]:
        from echodfkd.evaluate.echoclip.model import load_clip_model
        from echodfkd.report.echoclip import write_report
        from echodfkd.evaluate.echoclip.runner import Settings as ClipSettings
        from echodfkd.evaluate.echoclip.runner import run_echoclip

        cache = self.p["echoclip"] / "cache"
        clip = load_clip_model(model, device="cpu", hash_dir=cache)
        results, figures = run_echoclip(self.p["dynamic"], [self.p["pred_student"], self.p["pred_teacher"]], clip,
                                        cache, ClipSettings(split="TEST"))
        write_report(results, figures, self.p["echoclip"])
        return {"model": model, "clips": results["summary"]["clips"], "models": sorted(results["summary"]["models"])}


def _dataset_summary(root: Path) -> dict[str, Any]:
    import pandas as pd

    fl = pd.read_csv(root / "FileList.csv")
    return {"clips": int(len(fl)), "frames": int(fl["NumberOfFrames"].sum()),
            "splits": {k: int(v) for k, v in fl["Split"].value_counts().items()}}


def clean_output(out: str | os.PathLike) -> None:
    """Remove a previous demo output folder (for --fresh)."""
    if Path(out).exists():
        shutil.rmtree(out)
