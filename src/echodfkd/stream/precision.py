"""Which engine precision to run: each candidate's masks checked against fp32 on real clips, then timed.

`check_precisions` streams the same clips through an fp32 predictor and each candidate precision
(interleaved clip by clip, so a busy machine slows all alike) and returns, per precision, the Dice of its
binary masks against fp32's (per clip and the worst clip) and its frames/s. The masks are compared before
the run's largest-component step: that step keeps one region of two of similar size, so a change of a few
pixels can swap a whole region in or out (on the demo student, mixed vs fp32 on a real A4C clip: Dice
0.9978 before it, 0.9819 after); the Dice after it is reported too (`dice_min_final`). `choose_precision` picks the
fastest precision whose worst-clip Dice is >= `DICE_BAR` (fp32 always qualifies: it is the reference).
`auto_precision` does both on the first few of the user's clips for `predict --precision auto` and caches
the choice in the output folder (`precision.json`), keyed by the weights, size, settings, torch and CPU.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from echodfkd.errors import ModelError
from echodfkd.measures.masks import binarize

#: A precision counts as accurate if its masks stay this close (Dice, worst clip) to fp32's (issue 17).
DICE_BAR = 0.995
#: Candidates tried by default, after the fp32 reference.
CANDIDATES = ("mixed", "bf16")
#: `predict --precision auto` checks this many of the user's clips, at most this many frames each.
AUTO_CLIPS = 3
AUTO_FRAMES = 128
CACHE_NAME = "precision.json"
CACHE_FORMAT = "echodfkd-precision-choice"


@dataclass
class PrecisionCheck:
    """One precision's agreement with fp32 (Dice of binary masks) and its speed on the checked clips."""

    precision: str
    dice_min: float
    dice_mean: float
    fps: float
    dice_per_clip: dict[str, float] = field(default_factory=dict)
    #: The worst clip's Dice after the run's largest-component step (None when the run does not use it).
    dice_min_final: float | None = None


def _stream_masks(predictor: Any, frames: np.ndarray,
                  clock: Callable[[], float]) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Binary masks (T, C, H, W) of a clip streamed through `predictor` (at its Dice threshold), before and
    (None if unused) after its largest-component step, and the seconds."""
    from echodfkd.stream.postprocess import keep_largest_component

    keep = bool(getattr(predictor, "largest_component", False))
    predictor.largest_component = False  # raw masks first; the step is applied below, as push does
    try:
        soft, start = [], clock()
        for r in predictor.stream_clip(frames):
            soft.append(np.stack([r.soft] + ([r.rv] if r.rv is not None else [])))
        seconds = clock() - start
    finally:
        predictor.largest_component = keep
    raw, t = np.stack(soft), predictor.thresholds["dice"]
    if not keep:
        return binarize(raw, t), None, seconds
    final = raw.copy()
    low = min(predictor.thresholds.values())
    final[:, 0] = np.stack([keep_largest_component(m, low) for m in raw[:, 0]])
    return binarize(raw, t), binarize(final, t), seconds


def check_precisions(make_predictor: Callable[[str], Any], clips: Sequence[tuple[str, np.ndarray]],
                     candidates: Iterable[str] = CANDIDATES, reference: Any = None,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, PrecisionCheck]:
    """Stream `clips` [(name, uint8 (T, H, W))] through fp32 and each candidate; per-precision Dice vs fp32 and fps.

    `make_predictor(precision)` builds a `Predictor` (or anything with `stream_clip` and `thresholds`);
    `reference` is an fp32 one already built. Each clip is streamed once per precision, untimed first
    (warm-up), then timed.
    """
    from echodfkd.measures.masks import dice

    if not clips:
        raise ModelError("checking engine precisions needs at least one clip")
    names = ["fp32", *[c for c in candidates if c != "fp32"]]
    predictors = {p: (reference if p == "fp32" and reference is not None else make_predictor(p)) for p in names}
    seconds = dict.fromkeys(names, 0.0)
    frames_total = 0
    per_clip: dict[str, dict[str, float]] = {p: {} for p in names}
    final: dict[str, list[float]] = {p: [] for p in names}

    def agree(a: np.ndarray, b: np.ndarray) -> float:
        return round(float(dice(a.reshape(-1, *a.shape[2:]), b.reshape(-1, *b.shape[2:]), reduction="mean")), 5)

    for name, frames in clips:
        frames_total += len(frames)
        ref = None
        for p in names:
            _stream_masks(predictors[p], frames[:8], clock)  # warm-up: allocator, oneDNN primitives
            masks, after, sec = _stream_masks(predictors[p], frames, clock)
            seconds[p] += sec
            ref = (masks, after) if p == "fp32" else ref
            per_clip[p][name] = agree(masks, ref[0])
            if after is not None and ref[1] is not None:
                final[p].append(agree(after, ref[1]))
    return {p: PrecisionCheck(p, min(per_clip[p].values()), round(float(np.mean(list(per_clip[p].values()))), 5),
                              round(frames_total / max(seconds[p], 1e-9), 1), per_clip[p],
                              min(final[p]) if final[p] else None) for p in names}


def choose_precision(checks: dict[str, PrecisionCheck], bar: float = DICE_BAR) -> tuple[str, str]:
    """(precision, one-line reason): the fastest checked precision whose worst-clip Dice vs fp32 is >= `bar`."""
    if "fp32" not in checks:  # the Dice figures are measured against it
        raise ModelError("no fp32 reference among the checked precisions")
    best = max((c for c in checks.values() if c.precision == "fp32" or c.dice_min >= bar), key=lambda c: c.fps)
    others = "; ".join(f"{c.precision} {c.fps:.0f} fps, Dice {c.dice_min:.4f}"
                       + ("" if c.precision == "fp32" or c.dice_min >= bar else " (below the bar)")
                       for c in checks.values() if c.precision != best.precision)
    reason = (f"{best.precision}: fastest within Dice {bar} of fp32 ({best.fps:.0f} fps, worst-clip Dice "
              f"{best.dice_min:.4f})" + (f"; {others}" if others else ""))
    return best.precision, reason


def _cache_key(predictor: Any, settings: dict[str, Any]) -> str:
    """Weights, size, torch and CPU (the compiled engine's key) plus the settings that shape the masks."""
    from echodfkd.models.compiled import engine_key

    student = getattr(predictor.engine, "student", None)
    if student is None:
        raise ModelError("--precision auto needs the torch backend")
    return engine_key(student, tuple(predictor.size), "auto:" + repr(sorted(settings.items())))


def auto_precision(make_predictor: Callable[[str], Any], sources: Sequence[Any], out: str | Path,
                   log: Callable[[str], None] | None = None, bar: float = DICE_BAR,
                   clips: int = AUTO_CLIPS) -> tuple[str, Any]:
    """`predict --precision auto`: (precision, its predictor), checked on the first `clips` sources, cached in OUT."""
    from echodfkd.io.atomic import load_json, save_json
    from echodfkd.stream.batch import _load

    built: dict[str, Any] = {}

    def make(precision: str) -> Any:
        if precision not in built:  # each precision's predictor (and compiled engine) is built once
            built[precision] = make_predictor(precision)
        return built[precision]

    ref = make("fp32")
    settings = {k: v for k, v in ref.settings().items() if k not in ("precision", "alert")}
    key = _cache_key(ref, settings)
    path = Path(out) / CACHE_NAME
    cached = load_json(path, ModelError) if path.is_file() else None
    if isinstance(cached, dict) and cached.get("format") == CACHE_FORMAT and cached.get("key") == key:
        precision, reason = str(cached["precision"]), f"cached in {path}: {cached.get('reason', '')}"
    else:
        loaded = []
        for src in sources[:max(1, clips)]:
            try:
                loaded.append((src.name, _load(src).frames[:AUTO_FRAMES]))
            except Exception as exc:  # an unreadable clip is reported later by the prediction itself
                if log:
                    log(f"precision check: skipped {src.name} ({str(exc).splitlines()[0][:120]})")
        if not loaded:
            precision, reason = "fp32", "no readable clip to check other precisions on"
        else:
            checks = check_precisions(make, loaded, reference=ref)
            precision, reason = choose_precision(checks, bar)
            reason += f" (on {len(loaded)} clip(s))"
            Path(out).mkdir(parents=True, exist_ok=True)
            save_json(path, {"format": CACHE_FORMAT, "version": 1, "key": key, "precision": precision,
                             "reason": reason, "bar": bar, "checks": {k: asdict(v) for k, v in checks.items()}})
    if log:
        log(f"precision auto -> {precision}: {reason}")
    return precision, make(precision)
