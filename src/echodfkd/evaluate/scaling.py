"""Scaling laws over a sweep of (B, l) students: log-log fits, 90 % slope intervals, saturation point.

A sweep folder holds one sub-folder per run with `config.json` (`blocks`, `layers`, `params`) and a
`metrics.json` written by `echodfkd evaluate` (anywhere below the run folder; the shallowest wins).

Fitted quantities, all against x = ln(params):
- ``afd``:  y = −ln(aFD_ED + aFD_ES)   (higher is better)
- ``iou``:  y = ln(1 − meanIoU)          (lower is better)
- ``dice``: y = ln(1 − Dice)             (lower is better)

**Saturation point.** Sort the distinct model sizes P1 < P2 < ...; for each Pj fit the tail of runs with
params >= Pj (at least two distinct sizes). Its gain per doubling of params is slope·ln 2, signed so that
positive means better. The noise is the median, over the tail's runs, of the half-width of each run's
bootstrap 90 % interval of the metric, carried to the fitted scale (delta method). The saturation point is
the smallest Pj whose tail gains less per doubling than that noise: beyond it, doubling the model buys less
than the test set can resolve. None means "not saturated within the sweep". Runs without intervals fall
back to the residual standard deviation of the full fit as the noise.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from echodfkd.errors import DatasetError
from echodfkd.io.records import EvaluationMetrics, StudentConfig, overall

METRICS = {
    "afd": ("-ln(aFD_ED + aFD_ES)", "higher"),
    "iou": ("ln(1 - meanIoU)", "lower"),
    "dice": ("ln(1 - Dice)", "lower"),
}


def headline(metrics: dict) -> dict:
    """The sweep-level numbers of one metrics.json: aFD_ED/ES (+ CI of their sum), Dice and IoU (+ CIs)."""
    out: dict = {}
    full = (metrics.get("afd") or {}).get("full") or {}
    clean = (metrics.get("afd") or {}).get("clean") or {}
    for key in ("aFD_ED", "aFD_ES", "aFD_sum", "aFD_sum_ci90", "n_clips"):
        out[key] = full.get(key)
        out[f"clean_{key}"] = clean.get(key)
    seg = metrics.get("segmentation") or {}
    for source in ("vs_tracings", "vs_ground_truth", "vs_teacher"):
        block = overall(seg.get(source))
        if block.get("dice_per_video_mean") is not None:
            out["dice"] = block["dice_per_video_mean"]
            out["dice_ci90"] = block.get("dice_per_video_mean_ci90")
            out["iou"] = block["iou_per_video_mean"]
            out["iou_ci90"] = block.get("iou_per_video_mean_ci90")
            out["seg_source"] = source
            break
    return out


def _params_from_config(config: dict, path: Path) -> int:
    if config.get("params") is not None:
        return int(config["params"])
    try:  # a Student run directory's config: count the parameters of the architecture it describes
        from echodfkd.models import Student
        arch = {k: config[k] for k in ("blocks", "layers", "filters", "skip", "residual", "out_channels")
                if k in config}
        return int(sum(p.numel() for p in Student(**arch).parameters()))
    except Exception as exc:  # noqa: BLE001 - any failure means the config cannot tell us
        raise DatasetError(f"{path}: no 'params' and the architecture cannot be rebuilt ({exc})") from None


def load_sweep(sweep_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per run: run, blocks, layers, params and the headline metrics of its metrics.json."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: sweep folder not found")
    rows = []
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        cfg_path = run / StudentConfig.FILE
        found = sorted(run.rglob("metrics.json"), key=lambda p: (len(p.parts), str(p)))
        if not cfg_path.is_file() or not found:
            continue
        config = StudentConfig.read(cfg_path).to_dict()  # one line naming a mistyped field
        missing = [k for k in ("blocks", "layers") if k not in config]
        if missing:
            raise DatasetError(f"{cfg_path}: missing {', '.join(missing)}")
        row = {"run": run.name, "blocks": int(config["blocks"]), "layers": int(config["layers"]),
               "params": _params_from_config(config, cfg_path), "metrics_path": str(found[0])}
        row.update(headline(EvaluationMetrics.read(found[0]).to_dict()))
        rows.append(row)
    if not rows:
        raise DatasetError(f"{root}: no run folder with both config.json and metrics.json")
    return pd.DataFrame(rows).sort_values(["params", "run"]).reset_index(drop=True)


#: Fewest runs with an interval and r² on the slope: a line through two points fits them exactly.
MIN_INTERVAL_N = 3


def fit_loglog(params: np.ndarray, y: np.ndarray, level: float = 0.90) -> dict:
    """Least-squares y = a + s·ln(params): slope, its `level` interval (t × stderr), intercept, r², n.

    From fewer than MIN_INTERVAL_N runs the slope comes without interval or r² (both None) and `note`
    says why; with 3 runs the t-quantile has one degree of freedom, so the interval is honest but wide.
    """
    x = np.log(np.asarray(params, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if n < 2 or np.ptp(x) == 0:
        return {"n": n, "slope": None, "slope_ci90": None, "intercept": None, "r2": None,
                "note": f"no fit: {n} run(s) at {np.unique(x).size} distinct size(s)"}
    fit = stats.linregress(x, y)
    out = {"n": n, "slope": float(fit.slope), "slope_ci90": None, "intercept": float(fit.intercept),
           "r2": None, "resid_std": 0.0, "gain_per_doubling": float(fit.slope * math.log(2))}
    if n >= MIN_INTERVAL_N:
        t = stats.t.ppf(0.5 + level / 2, n - 2)
        out["slope_ci90"] = [float(fit.slope - t * fit.stderr), float(fit.slope + t * fit.stderr)]
        out["resid_std"] = float(np.std(y - (fit.intercept + fit.slope * x), ddof=2))
        out["r2"] = float(fit.rvalue ** 2)
    else:
        out["note"] = (f"slope through {n} runs only: no interval and no r² (needs {MIN_INTERVAL_N} runs "
                       f"or more)")
    return out


def transformed(sweep: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The fitted quantity y and its bootstrap-noise half-width on the same scale (NaN when unknown)."""
    def halfwidth(col: str) -> np.ndarray:
        if col not in sweep:
            return np.full(len(sweep), np.nan)
        return np.array([(c[1] - c[0]) / 2 if isinstance(c, (list, tuple)) and None not in c else np.nan
                         for c in sweep[col]], dtype=np.float64)

    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "afd":
            total = pd.to_numeric(sweep.get("aFD_sum"), errors="coerce").to_numpy(dtype=float) \
                if "aFD_sum" in sweep else np.full(len(sweep), np.nan)
            alt = sweep.get("aFD_ED", np.nan) + sweep.get("aFD_ES", np.nan)
            total = np.where(np.isfinite(total), total, np.asarray(alt, dtype=float))
            return -np.log(total), halfwidth("aFD_sum_ci90") / total
        if metric in ("iou", "dice"):
            v = pd.to_numeric(sweep.get(metric, pd.Series(np.nan, index=sweep.index)), errors="coerce")
            v = v.to_numpy(dtype=float)
            return np.log(1 - v), halfwidth(f"{metric}_ci90") / (1 - v)
    raise DatasetError(f"unknown scaling metric {metric!r}; use one of {', '.join(METRICS)}")


def saturation_point(params: np.ndarray, y: np.ndarray, noise: np.ndarray, better: str = "higher") -> dict:
    """Smallest size whose tail fit gains less per doubling than the bootstrap noise (module doc)."""
    params = np.asarray(params, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    ok = np.isfinite(params) & np.isfinite(y)
    params, y, noise = params[ok], y[ok], noise[ok]
    sign = 1.0 if better == "higher" else -1.0
    full = fit_loglog(params, y)
    fallback = full.get("resid_std") or 0.0
    tails = []
    for p in np.unique(params):
        tail = params >= p
        if np.unique(params[tail]).size < 2:
            break
        fit = fit_loglog(params[tail], y[tail])
        gain = sign * fit["slope"] * math.log(2)
        tail_noise = noise[tail][np.isfinite(noise[tail])]
        level = float(np.median(tail_noise)) if tail_noise.size else float(fallback)
        tails.append({"from_params": float(p), "gain_per_doubling": float(gain), "noise": level})
        if gain < level:
            return {"params": float(p), "tails": tails, "noise_source": "bootstrap" if tail_noise.size
                    else "fit residuals"}
    return {"params": None, "tails": tails, "noise_source": "bootstrap" if np.isfinite(noise).any()
            else "fit residuals"}


def scaling_laws(sweep: pd.DataFrame) -> dict:
    """Fit every metric of METRICS that the sweep has: slope, 90 % interval, r², saturation point."""
    out = {}
    for metric, (label, better) in METRICS.items():
        y, noise = transformed(sweep, metric)
        if np.isfinite(y).sum() < 2:
            continue
        fit = fit_loglog(sweep["params"].to_numpy(), y)
        sign = 1.0 if better == "higher" else -1.0
        if fit.get("slope") is not None:
            fit["improvement_per_doubling"] = sign * fit["slope"] * math.log(2)
        fit.update({"quantity": label, "better": better,
                    "saturation": saturation_point(sweep["params"].to_numpy(), y, noise, better)})
        out[metric] = fit
    return out
