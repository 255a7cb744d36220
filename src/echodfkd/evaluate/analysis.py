"""Analyses of per-clip results: aFD against sampling rate, error concentration, EF from areas.

Scaling laws over a sweep live in `echodfkd.evaluate.scaling`; annotator noise (RMSE floor, correlation
ceiling, Laplace+uniform fit) in `echodfkd.evaluate.noise`, re-exported here.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats
from skimage.measure import label, regionprops

from echodfkd.errors import SignalError
from echodfkd.evaluate.noise import (annotator_noise_bounds, correlation_ceiling,  # noqa: F401 - re-exported
                                     fit_laplace_uniform, fit_or_reason, rmse_floor)

#: Default FPS bin edges: EchoNet-Dynamic is mostly 50 fps, so 50 gets a bin of its own.
FPS_EDGES = (0.0, 30.0, 40.0, 49.5, 50.5, 60.0, 75.0, 100.0, math.inf)


def _edge_label(lo: float, hi: float) -> str:
    if lo == 49.5 and hi == 50.5:
        return "50"
    if hi == 49.5:  # the bins either side of the 50-fps bin
        return f"{lo:g}-<50" if lo else "<50"
    if lo == 50.5:
        return f">50-{hi:g}" if not math.isinf(hi) else ">50"
    if math.isinf(hi):
        return f">={lo:g}"
    if lo == 0:
        return f"<{hi:g}"
    return f"{lo:g}-{hi:g}"


def afd_by_fps(per_clip: pd.DataFrame, edges: Sequence[float] = FPS_EDGES) -> pd.DataFrame:
    """aFD per FPS bin (Fig. 4): columns bin, lo, hi, n, aFD_ED, aFD_ES, sem_ED, sem_ES, ms_ED, ms_ES.

    `per_clip` has per-clip |error| columns ED, ES (frames) and FPS; empty bins are dropped and clips
    without a known FPS are left out of this analysis only.
    """
    df = per_clip[np.isfinite(per_clip["FPS"].to_numpy(dtype=float))]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sub = df[(df["FPS"] >= lo) & (df["FPS"] < hi)]
        if sub.empty:
            continue
        row = {"bin": _edge_label(lo, hi), "lo": lo, "hi": hi, "n": int(len(sub)),
               "fps_mean": float(sub["FPS"].mean())}
        for phase in ("ED", "ES"):
            e = sub[phase].dropna().to_numpy(dtype=float)
            secs = (sub[phase] / sub["FPS"]).dropna().to_numpy(dtype=float)
            row[f"aFD_{phase}"] = float(e.mean()) if e.size else float("nan")
            row[f"sem_{phase}"] = float(e.std(ddof=1) / np.sqrt(e.size)) if e.size > 1 else 0.0
            row[f"ms_{phase}"] = float(1000 * secs.mean()) if secs.size else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def error_concentration(errors: Sequence[float] | np.ndarray) -> dict:
    """Cumulative share of squared error against share of clips, worst clips first (Fig. 10).

    Returns `share_clips` and `share_error` (both starting at 0), and `frac_50`/`frac_80`: the smallest
    fraction of clips carrying at least 50 %/80 % of the total squared error (0.0 when there is no error).
    """
    e = np.asarray(errors, dtype=np.float64)
    if e.ndim != 1 or e.size == 0 or not np.isfinite(e).all():
        raise SignalError("error concentration needs a non-empty, finite 1-D array of per-clip errors")
    sq = np.sort(e ** 2)[::-1]
    total = sq.sum()
    share_clips = np.arange(e.size + 1) / e.size
    share_err = np.concatenate(([0.0], np.cumsum(sq) / total)) if total > 0 else np.zeros(e.size + 1)

    def frac(p: float) -> float:
        if total == 0:
            return 0.0
        k = int(np.searchsorted(share_err, p - 1e-12, side="left"))
        return float(share_clips[min(k, e.size)])

    return {"n": int(e.size), "share_clips": share_clips, "share_error": share_err,
            "frac_50": frac(0.5), "frac_80": frac(0.8)}


# ---------------------------------------------------------------------------------------------- EF
def long_axis(mask: np.ndarray) -> float:
    """Long-axis length (px) of a mask: max Feret diameter of its largest connected component; 0 if empty."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0.0
    regions = regionprops(label(m, connectivity=2))
    return float(max(regions, key=lambda r: r.area).feret_diameter_max)


def ef_area_ratio(area_ed: np.ndarray, area_es: np.ndarray) -> np.ndarray:
    """EF (%) as 100·(A_ED − A_ES)/A_ED, the reference code's naive estimate; NaN where A_ED is 0."""
    a_ed = np.asarray(area_ed, dtype=np.float64)
    a_es = np.asarray(area_es, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(a_ed > 0, 100.0 * (a_ed - a_es) / np.where(a_ed > 0, a_ed, 1.0), np.nan)


def ef_area_length(area_ed: np.ndarray, length_ed: np.ndarray, area_es: np.ndarray,
                   length_es: np.ndarray) -> np.ndarray:
    """EF (%) from single-plane area-length volumes V = 8A²/(3πL); NaN where V_ED or a length is 0."""
    a_ed, l_ed, a_es, l_es = (np.asarray(v, dtype=np.float64) for v in (area_ed, length_ed, area_es, length_es))
    with np.errstate(invalid="ignore", divide="ignore"):
        v_ed = 8 * a_ed ** 2 / (3 * np.pi * l_ed)
        v_es = 8 * a_es ** 2 / (3 * np.pi * l_es)
        ef = 100.0 * (v_ed - v_es) / v_ed
    return np.where(np.isfinite(ef) & (l_ed > 0) & (l_es > 0), ef, np.nan)


#: Fewest points a correlation is computed from (two points always give r = ±1).
MIN_CORRELATION_N = 3
EF_RANGE = (0.0, 100.0)


def ef_agreement(estimate: Sequence[float], reference: Sequence[float]) -> dict:
    """Pearson r (from 3 clips up), MAE and bias (estimate − reference) where both EFs are finite.

    `n_outside_range` counts estimates outside 0-100 %, which no heart has (the masks are wrong at those
    frames); they stay in MAE and bias so that the errors are not hidden, and the report flags them.
    """
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    ok = np.isfinite(est) & np.isfinite(ref)
    out = {"n": int(ok.sum()), "n_invalid": int((~ok).sum()),
           "n_outside_range": int(((est[ok] < EF_RANGE[0]) | (est[ok] > EF_RANGE[1])).sum())}
    if ok.sum() >= MIN_CORRELATION_N and np.ptp(est[ok]) > 0 and np.ptp(ref[ok]) > 0:
        out["pearson_r"] = float(stats.pearsonr(est[ok], ref[ok])[0])
    else:
        out["pearson_r"] = None
        out["pearson_r_note"] = (f"not computed from {int(ok.sum())} clip(s) (needs {MIN_CORRELATION_N})"
                                 if ok.sum() < MIN_CORRELATION_N else "not computed: constant values")
    out["mae"] = float(np.mean(np.abs(est[ok] - ref[ok]))) if ok.any() else None
    out["bias"] = float(np.mean(est[ok] - ref[ok])) if ok.any() else None
    return out


def fps_bins_note(bins: Sequence[dict]) -> str | None:
    """Why aFD against FPS says nothing (fewer than two FPS bins with clips), else None."""
    if len(bins) >= 2:
        return None
    if not bins:
        return "no clip with a known frame rate: aFD against FPS is left out"
    b = bins[0]
    return (f"all {b['n']} clip(s) fall in one FPS bin ({b['bin']} frames/s, mean {b['fps_mean']:.3g}): "
            f"aFD against FPS needs clips at two rates or more, so it is not drawn")
