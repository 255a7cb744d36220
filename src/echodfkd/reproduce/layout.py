"""Where each step of `echodfkd reproduce` writes, and the ordered list of steps (shared by plan and run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
        return self.out / "metrics.json"

    def run(self, name: str) -> Path:
        """Run directory of one configuration."""
        return self.runs / name

    def run_eval(self, name: str) -> Path:
        """Evaluation report of one configuration (inside its run, where the sweep report finds it)."""
        return self.runs / name / "evaluation"


def step_list(st: Settings) -> list[tuple[str, str]]:
    """(name, title) of every step, in order."""
    steps = [("check-dynamic", "check the EchoNet-Dynamic folder"),
             ("check-training", "check the training folder"),
             ("label-training", "teacher labels the training folder's TRAIN/VAL clips"),
             ("label-test", "teacher labels the EchoNet-Dynamic TEST clips")]
    names = [(st.config_name(b, l), b, l) for b, l in st.grid]
    steps += [(f"distill-{n}", f"distil student ({b},{l})") for n, b, l in names]
    steps += [(f"predict-{n}", f"student ({b},{l}) predicts the TEST clips") for n, b, l in names]
    steps.append(("evaluate-teacher", "evaluate the teacher on TEST (DeepLabv3 baseline)"))
    steps += [(f"evaluate-{n}", f"evaluate student ({b},{l}) on TEST") for n, b, l in names]
    if len(st.grid) > 1:
        steps.append(("scaling", "Tables 1-2 and scaling laws over the grid"))
    if st.echoclip:
        steps.append(("echoclip", "EchoCLIP mask quality and phase"))
    steps.append(("report", "write report.md and metrics.json"))
    return steps
