"""The records between steps: a student's config.json, targets/predictions meta.json, metrics.json, steps.json."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from echodfkd.io.records.base import Fields, Record, RecordError, _load, _where


# ---------------------------------------------------------------------- config.json (a student run)
@dataclass
class Thresholds(Fields):
    """Calibrated thresholds as fractions of 255 (`mask = soft >= t·255`)."""

    dice: float | None = None
    afd: float | None = None
    RANGES: ClassVar[dict] = {"dice": (0.0, 1.0), "afd": (0.0, 1.0)}


@dataclass
class TrainingSummary(Fields):
    """config.json's `training`: every distill setting (untyped ones kept) and how the run ended."""

    frame_size: int | None = None
    infer_size: int | None = None
    seq_len: int | None = None
    batch_size: int | None = None
    epochs: int | None = None
    seed: int | None = None
    precision: str | None = None
    epochs_trained: int | None = None
    stopped_early: bool | None = None
    best_val_loss: float | None = None
    best_val_bce: float | None = None
    best_checkpoint: str | None = None
    KEEP_NULL: ClassVar[tuple[str, ...]] = ("best_val_loss", "best_val_bce", "best_checkpoint")
    RANGES: ClassVar[dict] = {"frame_size": (1, None), "infer_size": (1, None), "seq_len": (1, None),
                              "batch_size": (1, None), "epochs": (1, None), "epochs_trained": (0, None)}


@dataclass
class StreamDefaults(Fields):
    """predict's defaults recorded by the run (RUN/stream.json or flags override them)."""

    warmup: int | None = None
    largest_component: bool | None = None
    RANGES: ClassVar[dict] = {"warmup": (0, None)}


ARCH_FIELDS = ("blocks", "layers", "filters", "skip", "residual", "out_channels", "in_channels",
               "input_mean", "input_std")


@dataclass
class StudentConfig(Record):
    """RUN/config.json: the student's architecture, training summary, calibrated thresholds and defaults."""

    architecture: str | None = None
    blocks: int | None = None
    layers: int | None = None
    filters: int | None = None
    skip: bool | None = None
    residual: bool | None = None
    out_channels: int | None = None
    in_channels: int | None = None
    input_mean: float | None = None
    input_std: float | None = None
    params: int | None = None
    status: str | None = None
    weights_sha256: str | None = None
    training: TrainingSummary | None = None
    data: dict[str, Any] | None = None
    infer_size: int | None = None
    frame_size: int | None = None
    stream: StreamDefaults | None = None
    thresholds: Thresholds | None = None
    thresholds_rv: Thresholds | None = None
    calibration: dict[str, Any] | None = None

    FORMAT: ClassVar[str] = "echodfkd.student-config"
    FILE: ClassVar[str] = "config.json"
    RANGES: ClassVar[dict] = {"blocks": (1, None), "layers": (1, None), "filters": (1, None),
                              "out_channels": (1, 2), "in_channels": (1, None), "params": (1, None),
                              "infer_size": (1, None), "frame_size": (1, None), "input_std": (0.0, None)}
    WEIGHTS: ClassVar[str] = "model.safetensors"

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None, prefix: str = "") -> "StudentConfig":
        """Validate, and refuse a config.json of another model (version 0 configs may lack `architecture`)."""
        if data.get("architecture", "echodfkd-student") != "echodfkd-student":
            raise RecordError(f"{_where(path)}not an echodfkd student config (architecture != 'echodfkd-student')")
        return super().from_dict(data, path, prefix)

    def require_model(self, path: str | os.PathLike) -> None:
        """Refuse a config that cannot rebuild a student (no architecture, blocks or layers)."""
        if self.architecture != "echodfkd-student":
            raise RecordError(f"{path}: not an echodfkd student config (architecture != 'echodfkd-student')")
        for name in ("blocks", "layers"):
            if getattr(self, name) is None:
                raise RecordError(f"{path}: {name} is missing")

    def arch_kwargs(self) -> dict[str, Any]:
        """The `Student(...)` arguments this config records (absent ones take the model's defaults)."""
        return {k: getattr(self, k) for k in ARCH_FIELDS if getattr(self, k) is not None}

    @property
    def finished(self) -> bool:
        """The run exported its weights and calibrated its thresholds."""
        return self.thresholds is not None

    def model_size(self, default: int) -> int:
        """The size predict runs at: `infer_size`, else a top-level `frame_size`, else `default`."""
        return self.infer_size or self.frame_size or default

    def run_summary(self) -> dict[str, Any]:
        """The headline of a finished run (what demo and reproduce record for the distill step)."""
        t = self.training or TrainingSummary()
        return {"params": self.params, "thresholds": self.thresholds.to_dict() if self.thresholds else None,
                "epochs_trained": t.epochs_trained, "best_val_loss": t.best_val_loss,
                "frame_size": t.frame_size, "infer_size": self.infer_size}


# ---------------------------------------------------------------------- meta.json (targets / predictions)
@dataclass
class TargetsMeta(Record):
    """TARGETS/meta.json: which teacher (architecture, weights hash, normalisation) labelled each channel."""

    channels: dict[str, dict[str, Any]] | None = None
    teacher: dict[str, Any] | None = None
    encoding: str | None = None

    FORMAT: ClassVar[str] = "echodfkd-teacher-targets"
    FILE: ClassVar[str] = "meta.json"

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Version 0 named one teacher at top level: it becomes the `masks` channel."""
        if version == 0 and "channels" not in data and isinstance(data.get("teacher"), dict):
            data["channels"] = {"masks": data["teacher"]}
        return data


@dataclass
class PredictionsMeta(Record):
    """PRED/meta.json: the settings that shaped the predictions, then the counts once done."""

    model: str | None = None
    backend: str | None = None
    precision: str | None = None
    compiled: bool | None = None
    threshold_dice: float | None = None
    threshold_afd: float | None = None
    threshold_source: str | None = None
    thresholds_rv: Thresholds | None = None
    warmup: int | None = None
    largest_component: bool | None = None
    model_size: list[int] | None = None
    alert: dict[str, Any] | None = None
    status: str | None = None
    clips: int | None = None
    flagged: list[str] | None = None
    failed: dict[str, str] | None = None
    streamed_frames: int | None = None
    stream_fps: float | None = None

    FORMAT: ClassVar[str] = "echodfkd.predictions"
    FILE: ClassVar[str] = "meta.json"
    KEEP_NULL: ClassVar[tuple[str, ...]] = ("model", "thresholds_rv", "stream_fps")
    RANGES: ClassVar[dict] = {"threshold_dice": (0.0, 1.0), "threshold_afd": (0.0, 1.0), "warmup": (0, None),
                              "clips": (0, None), "streamed_frames": (0, None), "stream_fps": (0.0, None)}

    def summary(self) -> dict[str, Any]:
        """The headline of a finished prediction step (what demo and reproduce record)."""
        return {"clips": self.clips, "failed": len(self.failed or {}), "flagged": len(self.flagged or []),
                "streamed_frames": self.streamed_frames, "stream_fps": self.stream_fps}


def read_folder_meta(folder: str | os.PathLike) -> TargetsMeta | PredictionsMeta | None:
    """A predictions or targets folder's meta.json (a targets folder is also a predictions folder), or None."""
    path = Path(folder) / "meta.json"
    if not path.is_file():
        return None
    raw = _load(path)
    if isinstance(raw, dict) and (raw.get("format") == TargetsMeta.FORMAT or
                                  ("format" not in raw and "teacher" in raw and "threshold_afd" not in raw)):
        return TargetsMeta.parse(raw, path)
    return PredictionsMeta.parse(raw, path)


# ---------------------------------------------------------------------- metrics.json (evaluate)
def overall(block: dict[str, Any] | None) -> dict[str, Any]:
    """The all-frames summary of a segmentation block: its `overall` part (ED/ES/overall), or the block itself."""
    block = block or {}
    inner = block.get("overall")
    return inner if isinstance(inner, dict) else block


@dataclass
class EvaluationMetrics(Record):
    """REPORT/metrics.json written by `evaluate`: segmentation, aFD, analysis, the thresholds and figures."""

    dataset: str | None = None
    predictions: str | None = None
    split: str | None = None
    n_clips: int | None = None
    n_missing_predictions: int | None = None
    thresholds: dict[str, Any] | None = None
    segmentation: dict[str, Any] | None = None
    afd: dict[str, Any] | None = None
    figures: list[str] | None = None

    FORMAT: ClassVar[str] = "echodfkd.evaluation"
    FILE: ClassVar[str] = "metrics.json"
    RANGES: ClassVar[dict] = {"n_clips": (0, None), "n_missing_predictions": (0, None)}

    def overall(self, source: str) -> dict[str, Any]:
        """Summary over all frames of one segmentation source (`vs_tracings`, `vs_teacher`, ...); {} if absent."""
        return overall((self.segmentation or {}).get(source))

    def afd_subset(self, subset: str = "full") -> dict[str, Any]:
        """aFD figures of the `full` set or the `clean` subset ({} if absent)."""
        return (self.afd or {}).get(subset) or {}


@dataclass
class DemoMetrics(Record):
    """OUT/metrics.json of `echodfkd demo`: settings, step times and summaries, both models' evaluations."""

    settings: dict[str, Any] | None = None
    step_seconds: dict[str, float] | None = None
    total_seconds: float | None = None
    steps: dict[str, dict[str, Any]] | None = None
    student: EvaluationMetrics | None = None
    teacher: EvaluationMetrics | None = None

    FORMAT: ClassVar[str] = "echodfkd.demo"
    FILE: ClassVar[str] = "metrics.json"
    REQUIRED: ClassVar[tuple[str, ...]] = ("steps",)


@dataclass
class ReproduceMetrics(Record):
    """OUT/metrics.json of `echodfkd reproduce`: inputs, checks, tables, students, links (docs/formats.md)."""

    inputs: dict[str, Any] | None = None
    students: dict[str, dict[str, Any]] | None = None
    main_student: str | None = None
    reports: dict[str, str] | None = None
    figures: list[str] | None = None
    steps_seconds: dict[str, float] | None = None

    FORMAT: ClassVar[str] = "echodfkd-reproduce"
    FILE: ClassVar[str] = "metrics.json"
    REQUIRED: ClassVar[tuple[str, ...]] = ("students",)


@dataclass
class CamusMetrics(Record):
    """REPORT/metrics.json written by `camus`: the student, segmentation and EF by view, the Table 3 row."""

    student: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    segmentation: dict[str, Any] | None = None
    ef: dict[str, Any] | None = None
    figures: list[str] | None = None
    table3_row: dict[str, Any] | None = None

    FORMAT: ClassVar[str] = "echodfkd.camus"
    FILE: ClassVar[str] = "metrics.json"


def metrics_record(path: str | os.PathLike) -> type[Record]:
    """Which record a metrics.json holds (by its format; files without one by their keys)."""
    path = Path(path)
    raw = _load(path)
    fmt = raw.get("format") if isinstance(raw, dict) else None
    for cls in (EvaluationMetrics, DemoMetrics, ReproduceMetrics, CamusMetrics):
        if fmt == cls.FORMAT:
            return cls
    if isinstance(raw, dict) and fmt is None:
        return (DemoMetrics if "step_seconds" in raw else ReproduceMetrics if "students" in raw
                else CamusMetrics if "table3_row" in raw else EvaluationMetrics)
    raise RecordError(f"{path}: format {fmt!r} is not a metrics record this release knows")


# ---------------------------------------------------------------------- steps.json (StepRunner)
@dataclass
class StepEntry(Fields):
    """One finished step: how long it took, its summary, what it depends on and the outputs that prove it."""

    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    depends_on: list[str] | None = None
    outputs: list[str] | None = None
    REQUIRED: ClassVar[tuple[str, ...]] = ("seconds",)
    RANGES: ClassVar[dict] = {"seconds": (0.0, None)}


@dataclass
class StepsJournal(Record):
    """OUT/steps.json: the finished steps of a demo or reproduce run (version 0: the steps at top level)."""

    steps: dict[str, StepEntry] = field(default_factory=dict)
    #: Steps whose inputs changed since they ran: they run again, their folders cleared first.
    stale: list[str] = field(default_factory=list)

    FORMAT: ClassVar[str] = "echodfkd.steps"
    FILE: ClassVar[str] = "steps.json"

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        """Version 0 was `{step: {"seconds", "summary"}}`."""
        return {"steps": data} if version == 0 else data


RECORDS: tuple[type[Record], ...] = (StudentConfig, TargetsMeta, PredictionsMeta, EvaluationMetrics, DemoMetrics,
                                     ReproduceMetrics, CamusMetrics, StepsJournal)
