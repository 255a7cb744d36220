"""Real-time predictor: frames stream one at a time through the student (no look-ahead).

Any frame size is accepted: frames are resized to the model's size (the run's `infer_size`, else a
top-level `frame_size`, else 112) and the masks resized back, so outputs are at the input size.
Masks are uint8 soft (round(255·sigmoid)); areas and phases use the aFD threshold, `mask = soft >= t·255`.
Defaults come from the run: thresholds from config.json, warm-up and largest-component from RUN/stream.json
(written by benchmarks/measure_warmup_alert.py --write-defaults), the alert from RUN/alert.json.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np

from echodfkd.errors import ModelError, VideoError
from echodfkd.io.records import StudentConfig
from echodfkd.io.video import resize_masks
from echodfkd.measures.phases import find_beats
from echodfkd.models.student import check_frame_size
from echodfkd.stream.alert import (ALERT_FILE, AlertAccumulator, AlertConfig, AlertResult, calibration_clips,
                                  fit_alert, load_alert, save_alert, score_features, update_accumulators)
from echodfkd.stream.postprocess import keep_largest_component, logits_to_soft

DEFAULT_SIZE = 112
BACKENDS = ("torch", "onnx")
ONNX_NAME = "student.onnx"
#: Side file with measured streaming defaults ({"warmup": K, "largest_component": bool}).
STREAM_FILE = "stream.json"


@dataclass
class FrameResult:
    """One streamed frame: soft LV mask (uint8, input size), its area in pixels, and the latency."""

    soft: np.ndarray
    area: int
    latency_ms: float
    rv: np.ndarray | None = None


@dataclass
class ClipResult:
    """A whole clip: soft masks (T, H, W), areas, ED/ES frames of every beat, and the alert."""

    masks: np.ndarray
    areas: np.ndarray
    fps: float
    phases: dict[str, list]
    alert: AlertResult
    latency_ms: np.ndarray
    notes: list[str] = field(default_factory=list)
    rv: np.ndarray | None = None


def finish_frames(predictors: list["Predictor"], frames: np.ndarray, logits: np.ndarray) -> list[FrameResult]:
    """Everything after the network for one frame of each of n streams at once (latency left 0).

    `frames` (n, h, w) uint8 at the model size (from `Predictor.admit`), `logits` (n, C, h, w); row i
    belongs to `predictors[i]` (its thresholds, largest-region setting, input size and alert statistics).
    Element-wise steps run over the whole batch; the resize back and the areas once per input size; the
    largest region per frame.
    """
    soft = logits_to_soft(logits)
    lv, n = soft[:, 0], len(predictors)
    for i, p in enumerate(predictors):
        if p.largest_component:
            lv[i] = keep_largest_component(lv[i], min(p.thresholds.values()))
    cut = np.array([float(p.thresholds["afd"]) * 255.0 for p in predictors])[:, None, None]
    update_accumulators([p._acc for p in predictors], frames, lv, lv >= cut)
    sizes = [p._input_size or p.size for p in predictors]
    masks: list[Any] = [None] * n
    rvs: list[Any] = [None] * n
    areas = np.empty(n, dtype=np.int64)
    for size in dict.fromkeys(sizes):  # streams of one input size together (usually all of them)
        rows: Any = [i for i, s in enumerate(sizes) if s == size]
        rows = slice(None) if len(rows) == n else rows
        group = resize_masks(lv[rows], size)  # returns its input when the size is the model's
        areas[rows] = np.count_nonzero((group >= cut[rows]).reshape(len(group), -1), axis=1)
        rv = resize_masks(soft[rows, 1], size) if soft.shape[1] > 1 else [None] * len(group)
        for j, i in enumerate(range(n) if isinstance(rows, slice) else rows):
            masks[i], rvs[i] = group[j], rv[j]
    return [FrameResult(masks[i], int(areas[i]), 0.0, rvs[i]) for i in range(n)]


def check_clip(frames: np.ndarray) -> np.ndarray:
    """`frames` as an array of shape (T, H, W) with T > 0, else VideoError."""
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise VideoError(f"expected a clip of shape (T, H, W) with T > 0, got {frames.shape}")
    return frames


def load_run(model: Any) -> tuple[Any, StudentConfig, Path | None]:
    """(student, config record, run_dir) from a run directory or a `Student` instance (config.json read once)."""
    from echodfkd.models.student import Student

    if isinstance(model, Student):
        record = getattr(model, "record", None) or StudentConfig.parse(dict(model.config))
        return model.eval(), record, None
    if not isinstance(model, (str, os.PathLike)):
        raise ModelError(f"expected a student run directory or a Student, got {type(model).__name__}")
    run = Path(model)
    if not run.is_dir():
        raise ModelError(f"{run}: model run directory not found")
    student = Student.from_pretrained(run)
    return student, student.record, run


def load_stream_defaults(run_dir: Path | None, config: StudentConfig) -> dict[str, Any]:
    """Warm-up / largest-component defaults: RUN/stream.json, else config.json's `stream` section, else {}."""
    if run_dir is not None and (run_dir / STREAM_FILE).is_file():
        path = run_dir / STREAM_FILE
        from echodfkd.io.atomic import load_json

        data = load_json(path, ModelError)
        if not isinstance(data, dict):
            raise ModelError(f"{path}: expected a JSON object with warmup / largest_component")
        return data
    return config.stream.to_dict() if config.stream is not None else {}


@dataclass(frozen=True)
class PredictorOptions:
    """How a Predictor runs a student (None: the run's own default, from stream.json / config.json)."""

    device: str = "cpu"
    backend: str = "torch"
    warmup: int | None = None
    largest_component: bool | None = None
    threshold: float | None = None
    onnx_path: str | os.PathLike | None = None
    size: int | None = None
    compile: bool = False
    threads: int | None = None
    precision: str = "fp32"
    log: Callable[[str], None] | None = None


def _threshold(value: Any, what: str) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise ModelError(f"{what}: threshold must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= t <= 1.0:
        raise ModelError(f"{what}: threshold must be in [0, 1] (fraction of 255), got {t}")
    return t


class Predictor:
    """Stream frames through a trained student; soft masks, areas, phases and an unusual-input alert.

    `compile` runs the ahead-of-time compiled torch engine on CPUs (built once per weights, size and
    precision, ~10-30 s, then cached; on 2 cores it streamed 1.45x the eager fp32 fps in fp32 and ~3x in bf16);
    `threads` sets ONNX Runtime's thread count (torch uses its global setting); `precision` is the torch
    engine's: "fp32", "mixed" (bf16 convolutions, fp32 state) or "bf16" (all bf16; on real clips its masks
    drifted to Dice 0.99 of fp32); `echodfkd.stream.precision` measures which to use;
    `log` receives progress lines (e.g. while the compiled engine is built).
    """

    def __init__(self, model_dir_or_student: Any, options: PredictorOptions | None = None, **overrides: Any) -> None:
        o = replace(options or PredictorOptions(), **overrides)
        if o.backend not in BACKENDS:
            raise ModelError(f"backend must be one of {BACKENDS}, got {o.backend!r}")
        student, self.record, self.run_dir = load_run(model_dir_or_student)
        self.config = self.record.to_dict()  # the run's config.json as a dict (read-only view)
        self.options = o
        stream_cfg = load_stream_defaults(self.run_dir, self.record)
        self.warmup = int(stream_cfg.get("warmup", 0) if o.warmup is None else o.warmup)
        if self.warmup < 0:
            raise ModelError(f"warm-up must be >= 0 frames, got {self.warmup}")
        self.largest_component = bool(stream_cfg.get("largest_component", False)
                                      if o.largest_component is None else o.largest_component)
        cal = self.record.thresholds.to_dict() if self.record.thresholds is not None else {}
        if o.threshold is not None:
            t = _threshold(o.threshold, "--threshold")
            self.thresholds = {"dice": t, "afd": t}
        else:
            self.thresholds = {k: _threshold(cal.get(k, 0.5), f"config thresholds.{k}") for k in ("dice", "afd")}
        self.threshold_source = "argument" if o.threshold is not None else ("config" if cal else "default 0.5")
        self.alert_config: AlertConfig = load_alert(self.run_dir, self.config)
        self.backend, self.device = o.backend, o.device
        if o.backend == "onnx" and o.precision != "fp32":
            raise ModelError(f"precision {o.precision} applies to the torch backend; the ONNX graph is fp32")
        if o.backend == "onnx" and o.compile:
            raise ModelError("--compile applies to the torch backend; ONNX Runtime optimises its graph itself")
        self.precision, self.compiled = o.precision, bool(o.compile and o.backend == "torch")
        if o.backend == "onnx":
            from echodfkd.stream.engines import OnnxEngine

            onnx_path = o.onnx_path
            if onnx_path is None:
                if self.run_dir is None:
                    raise ModelError("the onnx backend needs onnx_path when given a Student object")
                onnx_path = self.run_dir / ONNX_NAME
            self.onnx_path = Path(onnx_path)
            self.engine: Any = OnnxEngine(self.onnx_path, threads=o.threads)
            self.size = self.engine.size
        else:
            from echodfkd.stream.engines import TorchEngine

            self.onnx_path = None
            s = o.size or self.record.model_size(DEFAULT_SIZE)
            self.size = (int(s), int(s))
            self.engine = TorchEngine(student, device=o.device, compile=o.compile, precision=o.precision, log=o.log)
        for side in self.size:
            check_frame_size(side, student.blocks, "model size", ModelError)
        if o.backend == "torch" and o.compile:
            self.engine.prepare(*self.size)  # build/load now, not inside the first frame's latency
        self.out_channels = int(self.record.out_channels or 1)
        self._acc = AlertAccumulator()
        self.reset()

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, options: PredictorOptions | None = None,
                 **overrides: Any) -> "Predictor":
        """A predictor for a student run directory (RUN/config.json read once, as a typed record)."""
        return cls(Path(run_dir), options, **overrides)

    def fork(self, engine: Any, cls: type["Predictor"] | None = None) -> "Predictor":
        """A predictor with this one's settings (thresholds, warm-up, alert, sizes) streaming through `engine`,
        with its own per-clip state (e.g. one stream of a shared batched engine); `cls` picks a subclass."""
        clone = (cls or type(self)).__new__(cls or type(self))
        clone.__dict__.update(self.__dict__)
        clone.engine = engine
        clone._acc = AlertAccumulator()
        clone.reset()
        return clone

    # ------------------------------------------------------------------ streaming
    def reset(self) -> None:
        """Start a new clip: zero recurrent state, forget alert statistics."""
        self.engine.reset()
        self._acc.reset()
        self._input_size: tuple[int, int] | None = None

    def push(self, frame: np.ndarray) -> FrameResult:
        """Process the next frame (uint8 grayscale (H, W)) using only the frames pushed before it."""
        start = time.perf_counter()
        x = self.admit(frame)
        result = finish_frames([self], x[None], self.engine.step(x.astype(np.float32))[None])[0]
        result.latency_ms = (time.perf_counter() - start) * 1000.0
        return result

    def admit(self, frame: np.ndarray) -> np.ndarray:
        """Check the next frame, resize it to the model size (uint8), and step the warm-up before a clip's first."""
        frame = np.asarray(frame)
        if frame.ndim != 2 or frame.dtype != np.uint8 or 0 in frame.shape:
            raise VideoError(f"frame must be a non-empty 2-D uint8 grayscale array, got {frame.dtype} {frame.shape}")
        h, w = frame.shape
        first = self._input_size is None
        if first:
            self._input_size = (h, w)
        elif self._input_size != (h, w):
            raise VideoError(f"frame size changed inside a stream: {self._input_size} then {(h, w)} (call reset())")
        x = frame if (h, w) == self.size else cv2.resize(
            frame, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA if h > self.size[0] else cv2.INTER_LINEAR)
        if first and self.warmup:
            xf = x.astype(np.float32)
            for _ in range(self.warmup):  # supp. §6: pre-pad by repeating the first frame
                self.engine.step(xf)
        return x

    def alert(self, fps: float) -> AlertResult:
        """The alert for the frames pushed since the last reset."""
        return score_features(self._acc.features(fps), self.alert_config)

    # ------------------------------------------------------------------ whole clips
    def stream_clip(self, frames: np.ndarray) -> Iterator[FrameResult]:
        """Reset, then yield one FrameResult per frame of a clip (T, H, W)."""
        frames = check_clip(frames)
        self.reset()
        for frame in frames:
            yield self.push(frame)

    def finish_clip(self, results: list[FrameResult], fps: float) -> ClipResult:
        """Assemble streamed frame results into a ClipResult (phases, alert, notes)."""
        if not results:
            raise VideoError("no frames were streamed")
        masks = np.stack([r.soft for r in results])
        areas = np.array([r.area for r in results], dtype=np.int64)
        fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 0.0
        notes = self.notes(masks.shape[1:], fps)
        phases: dict[str, list] = {}
        for phase in ("ED", "ES"):
            found = find_beats(areas.astype(np.float64), phase, fps or None)
            phases[phase] = found
            phases[f"{phase}_s"] = [f / fps for f in found] if fps else []
        rv = np.stack([r.rv for r in results]) if results[0].rv is not None else None
        return ClipResult(masks, areas, fps, phases, self.alert(fps),
                          np.array([r.latency_ms for r in results]), notes, rv)

    def predict_clip(self, frames: np.ndarray, fps: float) -> ClipResult:
        """Stream a whole clip (uint8 (T, H, W)) and return masks, areas, phases and the alert."""
        return self.finish_clip(list(self.stream_clip(frames)), fps)

    def calibrate_alert(self, clean_clips: Iterable[tuple[np.ndarray, float]], false_alarm_rate: float = 0.05,
                        save_to: str | os.PathLike | None = None, save: bool = True,
                        augment: float = 0.0) -> AlertConfig:
        """Fit this predictor's alert on clean (frames, fps) clips (`alert.fit_alert`); save RUN/alert.json."""
        rows = [self.predict_clip(f, fps).alert.features for f, fps in calibration_clips(clean_clips, augment)]
        self.alert_config = fit_alert(rows, false_alarm_rate)
        target = Path(save_to) if save_to is not None else (self.run_dir / ALERT_FILE if self.run_dir else None)
        if save and target is not None:
            save_alert(target, self.alert_config)
        return self.alert_config

    def notes(self, input_size: tuple[int, int], fps: float) -> list[str]:
        """Human-readable notes about what was done to a clip of this size and rate."""
        notes = []
        if tuple(input_size) != tuple(self.size):
            notes.append(f"frames resized from {input_size[1]}x{input_size[0]} to the model's "
                         f"{self.size[1]}x{self.size[0]}; masks resized back")
        if not fps:
            notes.append("unknown frame rate: phases in frames only; the alert assumed 50 fps")
        if not self.alert_config.calibrated:
            notes.append("alert not calibrated (built-in references); run calibrate_alert on clean VAL clips")
        return notes

    def settings(self) -> dict[str, Any]:
        """The settings that shape the outputs (written to PRED/meta.json)."""
        return {"model": str(self.run_dir) if self.run_dir else None, "backend": self.backend,
                "onnx": str(self.onnx_path) if self.onnx_path else None, "precision": self.precision,
                "compiled": self.compiled,
                "threshold_dice": self.thresholds["dice"], "threshold_afd": self.thresholds["afd"],
                "threshold_source": self.threshold_source,
                "thresholds_rv": self.record.thresholds_rv.to_dict() if self.record.thresholds_rv else None,
                "warmup": self.warmup,
                "largest_component": self.largest_component, "model_size": list(self.size),
                "alert": self.alert_config.to_dict()}

