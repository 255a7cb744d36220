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


def beat_pairs(ed: Sequence[int], es: Sequence[int]) -> list[tuple[int, int]]:
    """The beats (ED, ES) of a clip: the one list the page's beats table, EF and chips all come from.

    Each ES is paired with the last unused ED before it; a clip that starts in systole (no ED before any
    ES) falls back to the nearest ED of each ES.
    """
    pairs = pair_beats(list(ed), list(es))
    if not pairs and ed and es:
        pairs = [(int(min(ed, key=lambda d: abs(d - s))), int(s)) for s in es]
    return pairs


def estimate_ef(binary: np.ndarray, ed: Sequence[int], es: Sequence[int]) -> dict[str, Any]:
    """Ejection fraction (%) from binary masks (T, H, W) at the ED and ES frames, per beat and averaged.

    Uses single-plane area-length volumes (mask area, long axis = max Feret diameter of the largest
    region); the fractional area change (FAC, the reference code's area ratio) is given too. Every beat
    of `beat_pairs` is listed; one that gives no EF, or that is left out of the mean, says why in `note`
    (`used` False). Beats with an ED or ES on the clip's first or last frame (likely cut short) are left
    out unless no other beat exists. Without a usable beat, `value` is None with a reason.
    """
    last = len(binary) - 1
    beats = []
    for d, s in beat_pairs(ed, es):
        a_ed, a_es = float(binary[d].sum()), float(binary[s].sum())
        ef = float(ef_area_length(a_ed, long_axis(binary[d]), a_es, long_axis(binary[s])))
        fac = float(ef_area_ratio(a_ed, a_es))
        ok = bool(np.isfinite(ef) and np.isfinite(fac))
        empty = [p for p, a in (("ED", a_ed), ("ES", a_es)) if a == 0]
        beats.append({"ed": d, "es": s, "ef": round(ef, 1) if ok else None, "fac": round(fac, 1) if ok else None,
                      "used": ok, "edge": not (0 < d < last and 0 < s < last),
                      "note": None if ok else f"no EF: the mask is empty at {' and '.join(empty) or 'ED/ES'}"})
    usable = [b for b in beats if b["used"]]
    if any(not b["edge"] for b in usable):  # an extremum on the first/last frame: a beat cut short
        for b in usable:
            if b["edge"]:
                b["used"], b["note"] = False, "left out: on the clip's first or last frame (beat cut short)"
    for b in beats:
        del b["edge"]
    used = [b for b in beats if b["used"]]
    if not used:
        reason = ("no ED/ES frames were found in this clip" if not (ed or es)
                  else "no complete beat (an ED and an ES) was found in this clip" if not beats
                  else "no beat with a non-empty mask at both its ED and its ES")
        return {"value": None, "fac": None, "beats": beats, "method": EF_METHOD, "reason": reason}
    return {"value": round(float(np.mean([b["ef"] for b in used])), 1),
            "fac": round(float(np.mean([b["fac"] for b in used])), 1),
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
