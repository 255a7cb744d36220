"""Unusual-input alert (paper §3.5): a per-clip reliability score from the student's own outputs and its input.

Per clip, six features, each oriented so that larger means "less like the clips the model was made for":

- ``blank``: fraction of frames in runs of >= 3 blank/constant input frames (pixel std below the dataset
  checker's cut-off; isolated glitches are ignored);
- ``noise``: fraction of frames in runs of >= 3 noise-like input frames (no spatial or no frame-to-frame
  correlation, as the dataset checker defines them);
- ``empty``: fraction of frames whose mask covers < 0.5 % of the image;
- ``uncertain``: mean fraction of the touched pixels (soft >= 10 %) that stay uncertain (10-90 %);
- ``jumps``: 95th percentile of the frame-to-frame mask-area change, relative to the median area;
- ``aperiodic``: 1 - the best autocorrelation of the area curve over heart periods of 0.25-2 s.

Each feature becomes a one-sided robust z-score against clean clips (median and 1.4826·MAD, with a
floor per feature); the clip's score is the largest z, and the features above the threshold are the
reasons. `fit_alert` measures the clean references and the threshold from the features of clean
validation clips (`calibration_clips`) at a stated false-alarm rate; it is a pure function (the caller,
`Predictor.calibrate_alert`, runs the model); without calibration, built-in references are used and
results say so.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from echodfkd.data.video_checks import CheckConfig, frame_statistics
from echodfkd.errors import EchoDFKDError

FEATURES = ("blank", "noise", "empty", "uncertain", "jumps", "aperiodic")
ALERT_FILE = "alert.json"
#: Built-in clean references (centre, scale) used before calibration; also the scale floors.
DEFAULT_REFERENCE: dict[str, tuple[float, float]] = {
    # Clean clips have no blank/noise runs at all: the floor makes an 8-frame stretch in 1,000 frames z = 8.
    "blank": (0.0, 0.001), "noise": (0.0, 0.001), "empty": (0.0, 0.01),
    # A real heart's rhythm varies from beat to beat (breathing, HRV), and a failing one (low EF) moves
    # its area curve little, so a clean real clip's best lag correlation can be ~0.3-0.7 where a
    # phantom's is ~0.97 (real EchoNet clips, EF 19-66 %: aperiodicity 0.38-0.73). The floor is wide;
    # blank and noise inputs are caught by their own features. Likewise a valid clip from another scanner
    # leaves more of the student's mask uncertain than a phantom does (real clips: 0.66-0.70 of the
    # touched pixels against ~0.45), so the uncertain floor is 0.1, not 0.05.
    "uncertain": (0.3, 0.1), "jumps": (0.15, 0.05), "aperiodic": (0.3, 0.3),
}
DEFAULT_THRESHOLD = 4.0
#: A calibrated threshold never goes below this many robust standard deviations.
MIN_THRESHOLD = 3.0
EMPTY_FRACTION = 0.005
UNCERTAIN_LOW, UNCERTAIN_HIGH = 26, 229  # soft levels for 10 % and 90 %
PERIOD_RANGE_S = (0.25, 2.0)
MIN_RUN = 3
DEFAULT_FPS = 50.0
#: Frames of per-frame statistics kept (2 minutes at 50 fps).
HISTORY = 6000


@dataclass
class AlertConfig:
    """Clean references per feature, the score threshold, and where they came from."""

    reference: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_REFERENCE))
    threshold: float = DEFAULT_THRESHOLD
    calibrated: bool = False
    false_alarm_rate: float | None = None
    clips: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `alert` section / alert.json)."""
        return {"threshold": self.threshold, "calibrated": self.calibrated,
                "false_alarm_rate": self.false_alarm_rate, "clips": self.clips,
                "reference": {k: {"centre": c, "scale": s} for k, (c, s) in self.reference.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "alert config") -> "AlertConfig":
        """Inverse of `to_dict`; unknown or broken content raises an EchoDFKDError naming `source`."""
        try:
            ref = dict(DEFAULT_REFERENCE)
            for k, v in dict(data.get("reference", {})).items():
                if k in FEATURES:
                    ref[k] = (float(v["centre"]), float(v["scale"]))
            return cls(reference=ref, threshold=float(data["threshold"]),
                       calibrated=bool(data.get("calibrated", True)),
                       false_alarm_rate=data.get("false_alarm_rate"), clips=int(data.get("clips", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise EchoDFKDError(f"{source}: malformed alert settings ({exc})") from None


@dataclass
class AlertResult:
    """A clip's reliability verdict: score, flag, reasons and the raw features."""

    score: float
    flagged: bool
    reasons: list[str]
    features: dict[str, float]
    threshold: float
    calibrated: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"score": self.score, "flagged": self.flagged, "reasons": self.reasons,
                "features": self.features, "threshold": self.threshold, "calibrated": self.calibrated}


class AlertAccumulator:
    """Collects cheap per-frame statistics while a clip streams (last HISTORY frames); `features(fps)` summarises them."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the clip."""
        self._prev: np.ndarray | None = None
        # Bounded history: memory stays flat on endless streams (the alert then covers the last frames).
        self.std: deque[float] = deque(maxlen=HISTORY)
        self.spatial: deque[float] = deque(maxlen=HISTORY)
        self.temporal: deque[float] = deque(maxlen=HISTORY)
        self.area: deque[float] = deque(maxlen=HISTORY)
        self.uncertain: deque[float] = deque(maxlen=HISTORY)

    def update(self, frame: np.ndarray, soft: np.ndarray, mask: np.ndarray) -> None:
        """Add one frame (uint8 (H, W)), its soft mask (uint8) and binary mask, all at the model size."""
        update_accumulators([self], frame[None], soft[None], mask[None])

    def features(self, fps: float) -> dict[str, float]:
        """The six clip features (see the module docstring); NaN where the clip is too short to tell."""
        return clip_features(np.array(self.std), np.array(self.spatial), np.array(self.temporal),
                             np.array(self.area), np.array(self.uncertain), fps)


def update_accumulators(accs: list[AlertAccumulator], frames: np.ndarray, softs: np.ndarray,
                        masks: np.ndarray) -> None:
    """`AlertAccumulator.update` of several streams at once: row i of the (n, H, W) arrays goes to accs[i]."""
    n = len(accs)
    # Each stream's (previous, current) pair, one call for all (a first frame is paired with itself).
    pairs = [x for a, f in zip(accs, frames) for x in (f if a._prev is None else a._prev, f)]
    stats = frame_statistics(np.stack(pairs))
    area = np.count_nonzero(masks.reshape(n, -1), axis=1)
    touched = np.count_nonzero((softs >= UNCERTAIN_LOW).reshape(n, -1), axis=1)
    unsure = np.count_nonzero(((softs >= UNCERTAIN_LOW) & (softs <= UNCERTAIN_HIGH)).reshape(n, -1), axis=1)
    for i, a in enumerate(accs):
        a.std.append(float(stats["std"][2 * i + 1]))
        a.spatial.append(float(stats["spatial"][2 * i + 1]))
        a.temporal.append(float(stats["temporal"][2 * i + 1]) if a._prev is not None else float("nan"))
        a._prev = frames[i]
        a.area.append(float(area[i]) / masks[i].size)
        a.uncertain.append(int(unsure[i]) / int(touched[i]) if touched[i] else 0.0)


def clip_features(std: np.ndarray, spatial: np.ndarray, temporal: np.ndarray, area: np.ndarray,
                  uncertain: np.ndarray, fps: float, check: CheckConfig = CheckConfig()) -> dict[str, float]:
    """Clip features from per-frame input statistics, mask-area fractions and uncertain fractions."""
    n = len(area)
    if n == 0:
        return {k: float("nan") for k in FEATURES}
    blank = std < check.blank_std
    with np.errstate(invalid="ignore"):
        following = np.append(temporal[1:], np.nan)
        neighbour = np.fmax(temporal, following)
        noise = ~blank & ((spatial < check.noise_spatial_corr) | (neighbour < check.noise_temporal_corr))
    blank, noise = in_runs(blank, MIN_RUN), in_runs(noise, MIN_RUN)
    med = float(np.median(area))
    jumps = float(np.percentile(np.abs(np.diff(area)), 95)) / max(med, 0.01) if n > 1 else float("nan")
    return {"blank": float(blank.mean()), "noise": float(noise.mean()),
            "empty": float((area < EMPTY_FRACTION).mean()), "uncertain": float(np.mean(uncertain)),
            "jumps": jumps, "aperiodic": aperiodicity(area, fps)}


def in_runs(flags: np.ndarray, min_run: int) -> np.ndarray:
    """The flags that belong to runs of at least `min_run` consecutive True values."""
    flags = np.asarray(flags, dtype=bool)
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    out = np.zeros_like(flags)
    for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        if end - start >= min_run:
            out[start:end] = True
    return out


def aperiodicity(curve: np.ndarray, fps: float) -> float:
    """1 - the best lag correlation of `curve` over heart periods of 0.25-2 s (NaN if the clip is too short)."""
    fps = fps if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
    x = np.asarray(curve, dtype=np.float64)
    lo = max(2, int(round(PERIOD_RANGE_S[0] * fps)))
    hi = min(int(round(PERIOD_RANGE_S[1] * fps)), len(x) - lo)  # keep >= lo overlapping frames
    if hi < lo:
        return float("nan")
    if np.ptp(x) == 0:
        return 1.0  # a constant area curve has no beat at all
    best = -1.0
    for lag in range(lo, hi + 1):
        a, b = x[:-lag], x[lag:]
        sa, sb = a.std(), b.std()
        if sa > 0 and sb > 0:
            best = max(best, float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb)))
    return float(1.0 - max(best, -1.0))


def score_features(features: dict[str, float], config: AlertConfig) -> AlertResult:
    """Robust one-sided z per feature; score = the largest; reasons = features above the threshold."""
    z = {}
    for name in FEATURES:
        value = features.get(name, float("nan"))
        if value is None or not np.isfinite(value):
            continue
        centre, scale = config.reference[name]
        z[name] = (value - centre) / scale
    score = max(z.values()) if z else 0.0
    reasons = [f"{name} {features[name]:.3g} (clean ~{config.reference[name][0]:.3g}, z {zv:.1f})"
               for name, zv in sorted(z.items(), key=lambda kv: -kv[1]) if zv > config.threshold]
    return AlertResult(score=float(score), flagged=bool(score > config.threshold), reasons=reasons,
                       features={k: float(v) for k, v in features.items()}, threshold=config.threshold,
                       calibrated=config.calibrated)


def fit_alert(feature_rows: list[dict[str, float]], false_alarm_rate: float = 0.05) -> AlertConfig:
    """Clean references (median, 1.4826·MAD floored) and a threshold passing 1 - rate of the clean clips."""
    if not feature_rows:
        raise EchoDFKDError("alert calibration: no clean validation clips")
    if not 0.0 < false_alarm_rate < 1.0:
        raise EchoDFKDError(f"alert calibration: false-alarm rate must be in (0, 1), got {false_alarm_rate}")
    ref = {}
    for name in FEATURES:
        vals = np.array([r.get(name, np.nan) for r in feature_rows], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        floor = DEFAULT_REFERENCE[name][1]
        if vals.size == 0:
            ref[name] = DEFAULT_REFERENCE[name]
            continue
        med = float(np.median(vals))
        ref[name] = (med, max(1.4826 * float(np.median(np.abs(vals - med))), floor))
    config = AlertConfig(reference=ref, threshold=0.0, calibrated=True, false_alarm_rate=false_alarm_rate,
                         clips=len(feature_rows))
    scores = np.array([score_features(r, config).score for r in feature_rows])
    config.threshold = max(float(np.quantile(scores, 1.0 - false_alarm_rate, method="higher")), MIN_THRESHOLD)
    return config


def calibration_clips(clean_clips: Iterable[tuple[np.ndarray, float]],
                      augment: float = 0.0) -> Iterator[tuple[np.ndarray, float]]:
    """The (frames, fps) clips an alert is calibrated on: each clean clip, and an augmented copy if `augment` > 0.

    The augmented copy (data/augment.py: another zoom, grey map, noise, sector edge...) makes "clean" span
    acquisitions the validation set (e.g. a phantom) does not show; corrupted inputs (blank stretches,
    noise) stay far outside it. The caller runs its predictor on them and passes the features to `fit_alert`.
    """
    from echodfkd.data.augment import augment_clip
    from echodfkd.progress import progress

    for i, (frames, fps) in enumerate(progress(clean_clips, desc="calibrating alert", unit="clip")):
        yield frames, fps
        if augment > 0:
            yield augment_clip(frames, None, augment, seed=i)[0], fps


def save_alert(path: str | os.PathLike, config: AlertConfig) -> Path:
    """Write alert settings atomically (a side file, so config.json is never rewritten under readers)."""
    from echodfkd.io.atomic import save_json

    return save_json(path, config.to_dict())


def load_alert(run_dir: Path | None, config: dict[str, Any]) -> AlertConfig:
    """Alert settings of a run: RUN/alert.json, else config.json's `alert` section, else the built-in ones."""
    if run_dir is not None and (run_dir / ALERT_FILE).is_file():
        path = run_dir / ALERT_FILE
        from echodfkd.io.atomic import load_json

        return AlertConfig.from_dict(load_json(path, EchoDFKDError), str(path))
    if isinstance(config.get("alert"), dict):
        return AlertConfig.from_dict(config["alert"], "config.json alert section")
    return AlertConfig()
