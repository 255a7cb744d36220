"""Where each step of `echodfkd reproduce` writes, and its declared steps (shared by the plan and the run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from echodfkd.io.records import EvaluationMetrics, ReproduceMetrics, TargetsMeta
from echodfkd.pipeline import Step
from echodfkd.reproduce.inputs import Settings


@dataclass(frozen=True)
class Layout:
    """Paths under OUT."""

    out: Path

    @property
    def check(self) -> Path:
        """Check reports: dynamic.csv / synthetic.csv (FileName,reason,detail) and their JSON summaries."""
        return self.out / "check"

    @property
    def training_view(self) -> Path:
        """A FileList-only view of the training folder without its unusable clips (Videos/ is a link)."""
        return self.out / "data" / "training"

    @property
    def targets(self) -> Path:
        """Teacher targets of the training TRAIN/VAL clips."""
        return self.out / "targets"

    @property
    def teacher_test(self) -> Path:
        """Teacher targets of the EchoNet-Dynamic TEST clips (the DeepLabv3 predictions)."""
        return self.out / "teacher_test"

    @property
    def runs(self) -> Path:
        """Student run directories, one per (B, l)."""
        return self.out / "runs"

    @property
    def predictions(self) -> Path:
        """Student predictions on TEST, one folder per (B, l) (a sweep folder for EchoCLIP)."""
        return self.out / "predictions"

    @property
    def evaluation(self) -> Path:
        """Evaluation reports that are not per run: teacher/ and sweep/."""
        return self.out / "evaluation"

    @property
    def echoclip(self) -> Path:
        """EchoCLIP report folder."""
        return self.out / "echoclip"

    @property
    def report(self) -> Path:
        """The top-level report."""
        return self.out / "report.md"

    @property
    def metrics(self) -> Path:
        """The top-level machine-readable summary."""
        return self.out / ReproduceMetrics.FILE

    def run(self, name: str) -> Path:
        """Run directory of one configuration."""
        return self.runs / name

    def run_eval(self, name: str) -> Path:
        """Evaluation report of one configuration (inside its run, where the sweep report finds it)."""
        return self.runs / name / "evaluation"


def declare_steps(st: Settings, lay: Layout | None = None) -> list[Step]:
    """Every step of a reproduce run, in order, with what it reads and the outputs that prove it finished.

    The one list of steps: `chain` attaches a function to each, the dry-run plan estimates each.
    """
    lay = lay or Layout(st.out)
    names = [(st.config_name(b, l), b, l) for b, l in st.grid]
    steps = [Step("check-dynamic", "check the EchoNet-Dynamic folder", (), (lay.check / "dynamic.csv",)),
             Step("check-training", "check the training folder", (), (lay.check / "training.csv",)),
             Step("label-training", "teacher labels the training folder's TRAIN/VAL clips", ("check-training",),
                  (lay.targets / TargetsMeta.FILE,)),
             Step("label-test", "teacher labels the EchoNet-Dynamic TEST clips", (),
                  (lay.teacher_test / TargetsMeta.FILE,))]
    steps += [Step(f"distill-{n}", f"distil student ({b},{l})", ("check-training", "label-training"),
                   (lay.run(n) / "model.safetensors",)) for n, b, l in names]
    steps += [Step(f"predict-{n}", f"student ({b},{l}) predicts the TEST clips", (f"distill-{n}",),
                   (lay.predictions / n / "areas.csv",), (lay.predictions / n,)) for n, b, l in names]
    steps.append(Step("evaluate-teacher", "evaluate the teacher on TEST (DeepLabv3 baseline)",
                      ("check-dynamic", "label-test"), (lay.evaluation / "teacher" / EvaluationMetrics.FILE,)))
    steps += [Step(f"evaluate-{n}", f"evaluate student ({b},{l}) on TEST",
                   ("check-dynamic", "label-test", f"predict-{n}"),
                   (lay.run_eval(n) / EvaluationMetrics.FILE,)) for n, b, l in names]
    if len(st.grid) > 1:
        steps.append(Step("scaling", "Tables 1-2 and scaling laws over the grid",
                          tuple(s.name for s in steps if s.name.startswith("evaluate-")),
                          (lay.evaluation / "sweep" / "sweep.json",)))
    if st.echoclip:
        steps.append(Step("echoclip", "EchoCLIP mask quality and phase",
                          ("label-test", *[f"predict-{n}" for n, _, _ in names]), (lay.echoclip / "echoclip.json",)))
    steps.append(Step("report", "write report.md and metrics.json", tuple(s.name for s in steps),
                      (lay.report, lay.metrics)))
    return steps


def step_list(st: Settings) -> list[tuple[str, str]]:
    """(name, title) of every step, in order."""
    return [(s.name, s.title) for s in declare_steps(st)]
