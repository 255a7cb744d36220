"""Numbers the viewer shows beside the clip: EF from ED/ES masks, latency statistics, phase lists."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from echodfkd.evaluate.analysis import ef_area_length, ef_area_ratio, long_axis

EF_METHOD = "single-plane area-length (V = 8A²/3πL), mean over beats"


def pair_beats(ed: Sequence[int], es: Sequence[int]) -> list[tuple[int, int]]:
    """Pair each ES with the last ED before it (one pair per beat, each ED used once)."""
    pairs, used = [], set()
    for s in sorted(es):
        before = [d for d in ed if d < s and d not in used]
        if before:
            d = max(before)
            used.add(d)
            pairs.append((int(d), int(s)))
    return pairs


def estimate_ef(binary: np.ndarray, ed: Sequence[int], es: Sequence[int]) -> dict[str, Any]:
    """Ejection fraction (%) from binary masks (T, H, W) at the ED and ES frames, per beat and averaged.

    Uses single-plane area-length volumes (mask area, long axis = max Feret diameter of the largest
    region); the fractional area change (FAC, the reference code's area ratio) is given too. Without an
    ED followed by an ES in the clip, `value` is None with a reason. Beats with an ED or ES on the clip's
    first or last frame (likely cut short) are left out unless no other beat exists.
    """
    pairs = pair_beats(list(ed), list(es))
    if not pairs and ed and es:  # clip starts in systole: fall back to the nearest ED of each ES
        pairs = [(int(min(ed, key=lambda d: abs(d - s))), int(s)) for s in es]
    # An extremum on the clip's first/last frame is usually a beat cut short: use it only if nothing else.
    last = len(binary) - 1
    inner = [(d, s) for d, s in pairs if 0 < d < last and 0 < s < last]
    pairs = inner or pairs
    beats = []
    for d, s in pairs:
        a_ed, a_es = float(binary[d].sum()), float(binary[s].sum())
        ef = float(ef_area_length(a_ed, long_axis(binary[d]), a_es, long_axis(binary[s])))
        fac = float(ef_area_ratio(a_ed, a_es))
        if np.isfinite(ef) and np.isfinite(fac):
            beats.append({"ed": d, "es": s, "ef": round(ef, 1), "fac": round(fac, 1)})
    if not beats:
        reason = ("no ED/ES frames were found in this clip" if not (ed and es)
                  else "no end-diastole with a non-empty mask before an end-systole")
        return {"value": None, "fac": None, "beats": [], "method": EF_METHOD, "reason": reason}
    return {"value": round(float(np.mean([b["ef"] for b in beats])), 1),
            "fac": round(float(np.mean([b["fac"] for b in beats])), 1),
            "beats": beats, "method": EF_METHOD, "reason": None}


def latency_summary(latency_ms: Sequence[float], fps: float) -> dict[str, Any]:
    """Median / 95th percentile / max per-frame latency and whether it keeps up with the clip's frame rate."""
    x = np.asarray(latency_ms, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"median": None, "p95": None, "max": None, "budget": None, "realtime": None}
    budget = 1000.0 / fps if fps > 0 else None
    p95 = float(np.percentile(x, 95))
    return {"median": round(float(np.median(x)), 3), "p95": round(p95, 3), "max": round(float(x.max()), 3),
            "budget": round(budget, 3) if budget else None,
            "realtime": bool(p95 <= budget) if budget else None}


def phase_lists(phases: Mapping[str, Any] | None) -> dict[str, list[int]]:
    """The ED and ES frame lists of a predictor's phases mapping, as sorted ints."""
    phases = phases or {}
    return {key: sorted(int(f) for f in phases.get(key) or []) for key in ("ED", "ES")}
