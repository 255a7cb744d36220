"""Dataset-level aFD: phase frames for every clip's signal against human (or true) ED/ES frames.

Inputs are plain mappings so this part never touches videos or masks (1,276 clips score in well under a
second). A clip may carry several reference frames per phase (phantom ground truth lists every beat);
each reference is scored, a clip's error is the mean over its references, and aFD is the mean over clips
with no example removed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from echodfkd.data.folder import strip_avi
from echodfkd.errors import SignalError
from echodfkd.evaluate.segmentation import bootstrap_ci, resampled_sums
from echodfkd.measures.phases import check_signal, echonet_es_frames, find_phase_frames_batch, nearest_frame

References = Mapping[str, Mapping[str, Sequence[int]]]  # name -> {"ED": [frames], "ES": [frames]}


def phase_table(signals: Mapping[str, np.ndarray], references: References,
                fps: Mapping[str, float] | None = None, compat: str = "paper") -> pd.DataFrame:
    """One row per (clip, phase, reference): FileName, Phase, Human, Found, Delay (found - human), Error, FPS."""
    order = list(references)
    index = {name: i for i, name in enumerate(order)}
    clean = []
    for name in order:
        if name not in signals:
            raise SignalError(f"{name}: no signal for this clip")
        try:
            clean.append(check_signal(signals[name], name))
        except SignalError as exc:
            raise SignalError(f"{name}: {exc}") from None
    parts = []
    for phase in ("ED", "ES"):
        rows = [(index[n], r) for n in order for r in references[n].get(phase, ())]
        if not rows:
            continue
        clip = np.array([c for c, _ in rows], dtype=np.int64)
        ref = np.array([r for _, r in rows], dtype=np.float64)
        try:
            found = find_phase_frames_batch(clean, clip, ref, phase, compat)
        except SignalError as exc:
            raise SignalError(f"{phase} references: {exc}") from None
        parts.append((clip, phase, np.rint(ref).astype(np.int64), found))
    names = [order[c] for clip, *_ in parts for c in clip]
    phases = [p for clip, p, *_ in parts for _ in clip]
    h = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
    f = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, np.int64)
    rate_of = np.array([float(fps.get(n, np.nan)) if fps is not None else np.nan for n in order])
    rates = np.concatenate([rate_of[p[0]] for p in parts]) if parts else np.zeros(0)
    return pd.DataFrame({"FileName": names, "Phase": phases, "Human": h, "Found": f,
                         "Delay": (f - h).astype(np.float64), "Error": np.abs(f - h).astype(np.float64),
                         "FPS": np.asarray(rates, float)})


def clip_errors(table: pd.DataFrame) -> pd.DataFrame:
    """Per-clip means: |error| in frames (ED, ES) and seconds (ED_s, ES_s), signed delay (ED_d, ES_d), FPS."""
    t = table.assign(Seconds=table["Error"] / table["FPS"])
    wide = t.pivot_table(index="FileName", columns="Phase", values=["Error", "Seconds", "Delay"],
                         aggfunc="mean", sort=False, dropna=False)
    out = pd.DataFrame(index=wide.index)
    for phase in ("ED", "ES"):
        for col, suffix in (("Error", ""), ("Seconds", "_s"), ("Delay", "_d")):
            out[phase + suffix] = wide[(col, phase)] if (col, phase) in wide else np.nan
    out["FPS"] = t.groupby("FileName", sort=False)["FPS"].first()
    return out


def _summary(per_clip: pd.DataFrame, n_boot: int, seed: int) -> dict:
    out: dict = {"n_clips": int(len(per_clip))}
    err = per_clip[["ED", "ES"]].to_numpy(dtype=np.float64)
    shared = None
    if len(err) and np.isfinite(err).all():  # one bootstrap draw for ED, ES and their sum
        means = resampled_sums(err, n_boot, seed) / len(err)
        shared = {"ED": means[:, 0], "ES": means[:, 1], "sum": means[:, 0] + means[:, 1]}

    def ci(vals: np.ndarray, key: str) -> list[float] | None:
        if not vals.size:
            return None
        if shared is not None:
            return list(np.quantile(shared[key], [0.05, 0.95]).astype(float))
        return list(bootstrap_ci(vals, "mean", n_boot, seed=seed))

    for phase in ("ED", "ES"):
        vals = per_clip[phase].dropna().to_numpy()
        secs = per_clip[f"{phase}_s"].dropna().to_numpy()
        delay = per_clip[f"{phase}_d"].dropna().to_numpy()
        out[f"aFD_{phase}"] = float(vals.mean()) if vals.size else None
        out[f"aFD_{phase}_ci90"] = ci(vals, phase)
        out[f"aFD_{phase}_seconds"] = float(secs.mean()) if secs.size else None
        out[f"bias_{phase}"] = float(delay.mean()) if delay.size else None  # mean found - human, frames
    both = per_clip[["ED", "ES"]].dropna()
    if len(both):
        total = (both["ED"] + both["ES"]).to_numpy()
        out["aFD_sum"] = float(total.mean())
        out["aFD_sum_ci90"] = ci(total, "sum")
    return out


def afd_metrics(table: pd.DataFrame, corrupted: Iterable[str] = (), n_boot: int = 10000,
                seed: int = 0) -> dict:
    """aFD_ED / aFD_ES (frames, seconds, bootstrap 90 % CI) on the full set and without `corrupted` clips."""
    per_clip = clip_errors(table)
    bad = set(corrupted)
    clean = per_clip[~per_clip.index.isin(bad)]
    return {"full": _summary(per_clip, n_boot, seed), "clean": _summary(clean, n_boot, seed),
            "n_corrupted_excluded": int(len(per_clip) - len(clean))}


def es_baseline_table(sizes: Mapping[str, np.ndarray], references: References,
                      fps: Mapping[str, float] | None = None) -> pd.DataFrame:
    """EchoNet's find_peaks ES rule: per reference, the detected ES frame nearest the human ES.

    A clip where find_peaks finds no ES falls back to its global minimum (column NoPeak marks it), so
    no example is removed.
    """
    rows = []
    for name, refs in references.items():
        if name not in sizes:
            raise SignalError(f"{name}: no size signal for this clip")
        try:
            peaks = echonet_es_frames(sizes[name])
        except SignalError as exc:
            raise SignalError(f"{name}: {exc}") from None
        fallback = int(np.argmin(sizes[name]))
        rate = float(fps.get(name, np.nan)) if fps is not None else np.nan
        for ref in refs.get("ES", ()):
            f = nearest_frame(peaks, ref)
            rows.append((name, "ES", int(ref), fallback if f is None else f, rate, f is None))
    t = pd.DataFrame(rows, columns=["FileName", "Phase", "Human", "Found", "FPS", "NoPeak"])
    t["Delay"] = (t["Found"] - t["Human"]).astype(np.float64)
    t["Error"] = t["Delay"].abs()
    return t


def read_signal_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Per-frame signals from a CSV `FileName,Frame,Value` (an `Area` column is accepted as the value)."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise SignalError(f"{path}: signal CSV not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SignalError(f"{path}: cannot parse signal CSV ({exc})") from None
    value = "Value" if "Value" in df.columns else "Area" if "Area" in df.columns else None
    if value is None or not {"FileName", "Frame"} <= set(df.columns):
        raise SignalError(f"{path}: expected columns FileName,Frame,Value; got {list(df.columns)}")
    frames = pd.to_numeric(df["Frame"], errors="coerce")
    values = pd.to_numeric(df[value], errors="coerce")
    if frames.isna().any() or (frames < 0).any() or (frames % 1 != 0).any():
        row = int(np.flatnonzero((frames.isna() | (frames < 0) | (frames % 1 != 0)).to_numpy())[0])
        raise SignalError(f"{path}: row {row + 2}: Frame must be a non-negative integer")
    if not np.isfinite(values.to_numpy(dtype=float)).all():
        row = int(np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)))[0])
        raise SignalError(f"{path}: row {row + 2}: {value} is missing or not finite")
    df = pd.DataFrame({"FileName": df["FileName"].astype(str).map(strip_avi), "Frame": frames.astype(np.int64),
                       "Value": values.astype(np.float64)}).sort_values(["FileName", "Frame"], kind="stable")
    out: dict[str, np.ndarray] = {}
    for name, grp in df.groupby("FileName", sort=False):
        fr = grp["Frame"].to_numpy()
        if fr[0] != 0 or fr.size != fr[-1] + 1 or np.any(np.diff(fr) != 1):
            raise SignalError(f"{path}: {name}: frames must be 0..T-1 with no gap or duplicate")
        out[str(name)] = grp["Value"].to_numpy()
    return out
