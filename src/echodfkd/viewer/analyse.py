"""Run the student (and optionally the teacher) on one clip and build the JSON the page draws."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable

import numpy as np

from echodfkd.measures.masks import binarize
from echodfkd.viewer.render import display_size, frame_sheet, mask_sheet
from echodfkd.viewer.summary import estimate_ef, latency_summary, phase_lists

DEFAULT_FPS = 50.0  # assumed when a file's header gives no frame rate (EchoNet's usual rate)

# Plain words for the alert's features (echodfkd.stream.alert.FEATURES); the value is the clip's feature.
FEATURE_WORDS: dict[str, Callable[[float], str]] = {
    "blank": lambda v: f"{v:.0%} of the frames are blank (one flat colour)",
    "noise": lambda v: f"{v:.0%} of the frames look like pure noise, with no anatomy",
    "empty": lambda v: f"the model found no left ventricle in {v:.0%} of the frames",
    "uncertain": lambda v: f"the model is unsure of the outline ({v:.0%} of the outlined pixels are uncertain)",
    "jumps": lambda v: f"the outline's size jumps from frame to frame (by up to {v:.0%} of its usual area)",
    "aperiodic": lambda v: "the area curve shows no regular heartbeat",
}


def plain_reason(reason: str, features: dict[str, float]) -> str:
    """One alert reason ('blank 0.12 (clean ~0, z 24.0)') in plain words."""
    name = str(reason).split(" ", 1)[0]
    if name in FEATURE_WORDS and name in features:
        return FEATURE_WORDS[name](float(features[name]))
    return str(reason)


def alert_json(alert: Any) -> dict[str, Any]:
    """The unusual-input alert (an `AlertResult`): flag, score and reasons, plus sentences for people."""
    features = dict(getattr(alert, "features", {}) or {})
    reasons = list(alert.reasons)
    words = [plain_reason(r, features) for r in reasons]
    if alert.flagged:
        message = ("Unusual input: " + ("; ".join(words) if words else "this clip is unlike the clips the model "
                   "was made for") + ". Treat the outline and the numbers with caution.")
    else:
        message = "No alert: nothing unusual found in this clip."
    return {"flag": bool(alert.flagged), "score": _rounded(alert.score, 3),
            "threshold": _rounded(alert.threshold, 3), "calibrated": bool(getattr(alert, "calibrated", True)),
            "reasons": [str(r) for r in reasons], "words": words, "message": message,
            "features": {k: _rounded(v, 4) for k, v in features.items()}}  # e.g. 'aperiodic' is NaN on short clips


def _rounded(value: Any, digits: int) -> float | None:
    """`value` rounded, or None when it is NaN/inf (strict JSON has no such numbers)."""
    value = float(value)
    return round(value, digits) if np.isfinite(value) else None


def _phases_from_areas(areas: np.ndarray, fps: float | None) -> dict[str, list[int]]:
    from echodfkd.measures.phases import find_beats
    if areas.size < 2 or np.ptp(areas) == 0:
        return {"ED": [], "ES": []}
    return {p: find_beats(areas, p, fps) for p in ("ED", "ES")}


def run_teacher(teacher: Callable, frames: np.ndarray, fps: float, batch: int = 16) -> dict[str, Any]:
    """Teacher soft masks at input size, areas (logit > 0), phases and per-frame latency."""
    import torch

    from echodfkd.io.video import resize_frames, resize_masks

    small = resize_frames(frames, 112)
    soft, latency = [], []
    with torch.inference_mode():
        for i in range(0, len(small), batch):
            t0 = time.perf_counter()
            logits = torch.as_tensor(teacher(small[i:i + batch])).float()
            prob = torch.sigmoid(logits).cpu().numpy()
            dt = (time.perf_counter() - t0) * 1000.0 / len(prob)
            soft.append(np.round(prob * 255).astype(np.uint8))
            latency += [dt] * len(prob)
    masks = resize_masks(np.concatenate(soft), frames.shape[1:])
    binary = binarize(masks, 0.5)
    areas = binary.reshape(len(binary), -1).sum(1).astype(np.float64)
    phases = _phases_from_areas(areas, fps)
    return {"masks": masks, "binary": binary, "areas": areas, "phases": phases,
            "latency_ms": latency, "threshold": 0.5}


class Analyser:
    """Holds the loaded models; `analyse(frames, fps, name)` returns the page's JSON (thread-safe)."""

    def __init__(self, predictor: Any, teacher: Callable | None = None, streams: Any = None) -> None:
        # streams: a `stream.multistream.MultiStream` over the predictor's engine: concurrent clips then step
        # together through one batched engine; without it the student runs one clip at a time.
        self.predictor, self.teacher, self.streams = predictor, teacher, streams
        self._lock = threading.Lock()  # one clip at a time where models are not shared safely

    def thresholds(self) -> dict[str, float]:
        """The student's binarisation thresholds: 'dice' (outline, EF) and 'afd' (area curve, phases)."""
        t = getattr(self.predictor, "thresholds", None) or {}
        return {k: float(t.get(k, 0.5)) for k in ("dice", "afd")}

    def student(self, frames: np.ndarray, fps: float) -> dict[str, Any]:
        """Run the streaming predictor (`echodfkd.stream.Predictor.predict_clip`) and read its ClipResult."""
        result = (self.streams.predict_clip(self.predictor, frames, fps) if self.streams is not None
                  else self.predictor.predict_clip(frames, fps))
        thresholds = self.thresholds()
        rv = None
        if getattr(result, "rv", None) is not None:  # an LV+RV student: its RV channel at its own threshold
            t_rv = (self.predictor.config.get("thresholds_rv") or {}).get("dice", 0.5)
            rv = binarize(result.rv, float(t_rv))
        return {"masks": result.masks, "binary": binarize(result.masks, thresholds["dice"]), "rv": rv,
                "areas": np.asarray(result.areas, np.float64), "phases": phase_lists(result.phases),
                "latency_ms": [float(x) for x in np.asarray(result.latency_ms, np.float64).ravel()],
                "thresholds": thresholds, "alert": alert_json(result.alert), "notes": list(result.notes or [])}

    def analyse(self, frames: np.ndarray, fps: float, name: str) -> dict[str, Any]:
        """Everything the page shows for one clip."""
        warnings: list[str] = []
        if not fps or fps <= 0:
            warnings.append(f"The file gives no frame rate; {DEFAULT_FPS:g} frames/s is assumed.")
            fps = DEFAULT_FPS
        with self._lock if self.streams is None else contextlib.nullcontext():
            t0 = time.perf_counter()
            stu = self.student(frames, fps)
            wall = time.perf_counter() - t0
        with self._lock:
            tea = run_teacher(self.teacher, frames, fps) if self.teacher is not None else None
        t, h, w = frames.shape
        size = display_size(t, h, w)
        sheet = frame_sheet(frames, size)
        sheet["mask_png"] = mask_sheet(stu["binary"], size, sheet["columns"])
        if stu.get("rv") is not None:
            sheet["rv_mask_png"] = mask_sheet(stu["rv"], size, sheet["columns"])
        out = {
            "name": name, "frames": int(t), "height": int(h), "width": int(w), "fps": round(float(fps), 3),
            "duration_s": round(t / fps, 3), "sheet": sheet, "thresholds": stu["thresholds"],
            "areas": [round(float(a), 2) for a in stu["areas"]], "phases": stu["phases"],
            "ef": dict(estimate_ef(stu["binary"], stu["phases"]["ED"], stu["phases"]["ES"]),
                       trusted=not stu["alert"]["flag"]),  # masks of an unusual input: EF not headlined
            "alert": stu["alert"], "latency_ms": [round(x, 3) for x in stu["latency_ms"]],
            "latency": latency_summary(stu["latency_ms"], fps), "wall_s": round(wall, 3),
            "teacher": None, "warnings": warnings + stu["notes"],
        }
        if tea is not None:
            sheet["teacher_mask_png"] = mask_sheet(tea["binary"], size, sheet["columns"])
            out["teacher"] = {"areas": [round(float(a), 2) for a in tea["areas"]], "phases": tea["phases"],
                              "ef": estimate_ef(tea["binary"], tea["phases"]["ED"], tea["phases"]["ES"]),
                              "latency": latency_summary(tea["latency_ms"], fps)}
        return out
