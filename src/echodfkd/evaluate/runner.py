"""`evaluate_predictions`: one pass over a prediction folder -> Dice/IoU, aFD, analyses, metrics.json + report.

Prediction folder (`PRED/`): `<FileName>.npz` with `masks` uint8 soft (T, H, W), optional `areas.csv` and
`meta.json` (`threshold_dice`, `threshold_afd`; 0.5 each when absent, which reproduces logit > 0).
Videos are never decoded except for the few overlay clips; the phase part works on 1-D signals only.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from echodfkd.data import open_dataset
from echodfkd.errors import DatasetError
from echodfkd.evaluate import afd as afd_mod
from echodfkd.evaluate.analysis import (afd_by_fps, ef_agreement, ef_area_length, ef_area_ratio,
                                        error_concentration, fit_laplace_uniform, long_axis)
from echodfkd.evaluate.phases import find_phase_frame, nearest_frame
from echodfkd.evaluate.segmentation import binarize, overlap_rows, summarize_by_phase, summarize_overlap
from echodfkd.io.video import resize_masks
from echodfkd.progress import progress

TEACHER_THRESHOLD = 0.5  # the teacher's own rule: logit > 0


def load_masks(path: Path, key: str = "masks") -> np.ndarray:
    """The uint8 (T, H, W) soft masks of a prediction/target npz, or a DatasetError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data.files:
                raise DatasetError(f"{path}: no '{key}' array (has {', '.join(data.files) or 'nothing'})")
            masks = data[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: unreadable npz ({exc})") from None
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise DatasetError(f"{path}: '{key}' must be (T, H, W) with T > 0, got {masks.shape}")
    if masks.dtype == bool:
        masks = masks.astype(np.uint8) * 255
    elif masks.dtype != np.uint8:
        raise DatasetError(f"{path}: '{key}' must be uint8 soft masks (0-255), got {masks.dtype}")
    return masks


def read_meta(pred_dir: Path) -> dict:
    """PRED/meta.json as a dict ({} when absent)."""
    path = pred_dir / "meta.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable JSON ({exc})") from None


@dataclass
class Collected:
    """What the single pass over the clips gathers."""

    signals: dict[str, np.ndarray] = field(default_factory=dict)
    teacher_sizes: dict[str, np.ndarray] = field(default_factory=dict)
    tracing_rows: list[pd.DataFrame] = field(default_factory=list)
    truth_rows: list[pd.DataFrame] = field(default_factory=list)
    teacher_rows: list[pd.DataFrame] = field(default_factory=list)
    ef_rows: list[dict] = field(default_factory=list)
    truth_events: dict[str, dict[str, list[int]]] = field(default_factory=dict)


def _references(ds, names: list[str]) -> tuple[dict, str, dict[str, str]]:
    """Human ED/ES per clip from tracings, else every true event from phantom ground truth."""
    refs, unscorable = {}, {}
    if getattr(ds, "has_tracings", False):
        for name in names:
            try:
                ed, es = ds.traced_frames(name)
            except DatasetError as exc:
                unscorable[name] = str(exc)
                continue
            refs[name] = {"ED": [int(ed)], "ES": [int(es)]}
        return refs, "human tracings (ED/ES = larger/smaller traced area)", unscorable
    if ds.has_ground_truth:
        for name in names:
            gt = ds.ground_truth(name)
            if gt is None:
                unscorable[name] = "no ground truth file"
                continue
            refs[name] = {"ED": [int(f) for f in np.ravel(gt["ed"])], "ES": [int(f) for f in np.ravel(gt["es"])]}
        return refs, "phantom ground truth (every true ED/ES frame)", unscorable
    return {}, "none (no tracings, no ground truth)", {}


def _fit_masks(soft: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return soft if soft.shape[1:] == shape else resize_masks(soft, shape)


def _clip_pass(ds, name: str, soft: np.ndarray, path: Path, refs: dict | None, t_dice: float, t_afd: float,
               signal: np.ndarray, compat: str, acc: Collected, teacher: np.ndarray | None) -> None:
    """Everything per clip that needs masks: overlaps, teacher agreement, EF areas and long axes."""
    n = soft.shape[0]
    binary = binarize(soft, t_dice)
    if refs and getattr(ds, "has_tracings", False):
        frames = [refs["ED"][0], refs["ES"][0]]
        if max(frames) >= n:
            raise DatasetError(f"{path}: {n} frames but the traced frame {max(frames)} is beyond them")
        true = np.stack([ds.trace_mask(name, f, shape=soft.shape[1:]) for f in frames])
        acc.tracing_rows.append(overlap_rows(name, binary[frames], true, frames, ["ED", "ES"]))
    gt = ds.ground_truth(name) if ds.has_ground_truth else None
    if gt is not None and "lv" in gt:
        lv = np.asarray(gt["lv"], dtype=bool)
        if lv.shape[0] != n:
            raise DatasetError(f"{path}: {n} frames but the ground truth has {lv.shape[0]}")
        pred = binarize(_fit_masks(soft, lv.shape[1:]), t_dice)
        acc.truth_rows.append(overlap_rows(name, pred, lv, np.arange(n)))
        acc.truth_events[name] = {"ED": [int(f) for f in np.ravel(gt["ed"])],
                                  "ES": [int(f) for f in np.ravel(gt["es"])]}
    if teacher is not None:
        if teacher.shape[0] != n:
            raise DatasetError(f"{path}: {n} frames but the teacher targets have {teacher.shape[0]}")
        tb = binarize(teacher, TEACHER_THRESHOLD)
        acc.teacher_rows.append(overlap_rows(name, binarize(_fit_masks(soft, tb.shape[1:]), t_dice), tb,
                                             np.arange(n)))
    if refs and refs.get("ED") and refs.get("ES") and signal.size == n:
        row = {"FileName": name, "EF_ref": ds.ef(name)}
        if gt is not None and "ef" in gt and not np.isfinite(row["EF_ref"]):
            row["EF_ref"] = float(gt["ef"])
        frames = {"human": (refs["ED"][0], refs["ES"][0]),
                  "found": (find_phase_frame(signal, refs["ED"][0], "ED", compat),
                            find_phase_frame(signal, refs["ES"][0], "ES", compat))}
        for where, (fe, fs) in frames.items():
            if max(fe, fs) < n:
                for ph, f in (("ED", fe), ("ES", fs)):
                    row[f"A_{ph}_{where}"] = float(binary[f].sum())
                    row[f"L_{ph}_{where}"] = long_axis(binary[f])
        acc.ef_rows.append(row)


def _ef_metrics(rows: list[dict]) -> tuple[dict, pd.DataFrame]:
    df = pd.DataFrame(rows)
    out: dict = {}
    for where in ("human", "found"):
        if f"A_ED_{where}" not in df:
            continue
        df[f"EF_area_{where}"] = ef_area_ratio(df[f"A_ED_{where}"], df[f"A_ES_{where}"])
        df[f"EF_arealength_{where}"] = ef_area_length(df[f"A_ED_{where}"], df[f"L_ED_{where}"],
                                                      df[f"A_ES_{where}"], df[f"L_ES_{where}"])
        for method in ("area", "arealength"):
            out[f"{method}_at_{where}_frames"] = ef_agreement(df[f"EF_{method}_{where}"], df["EF_ref"])
    return out, df


def _label_noise(table: pd.DataFrame, truth: dict[str, dict[str, list[int]]]) -> dict:
    """Laplace+uniform fit of human − nearest true frame (phantoms), else of found − human."""
    out = {}
    for phase in ("ED", "ES"):
        sub = table[table["Phase"] == phase]
        if truth:
            d = [h - nearest_frame(truth[n][phase], h) for n, h in zip(sub["FileName"], sub["Human"])
                 if n in truth and truth[n][phase]]
            source = "human frame - nearest true frame"
        else:
            d, source = sub["Delay"].tolist(), "found frame - reference frame"
        if len(d) >= 10:
            fit = fit_laplace_uniform(np.asarray(d, float))
            fit["source"] = source
            out[phase] = fit
    return out


def evaluate_predictions(data_root: str | os.PathLike, pred_dir: str | os.PathLike, split: str | None = "TEST",
                         teacher_dir: str | os.PathLike | None = None, corrupted: str | os.PathLike | None = None,
                         signal_csv: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                         threshold: float | None = None, compat: str = "paper", n_boot: int = 10000,
                         allow_missing: bool = False, overlays: int = 3, seed: int = 0) -> dict:
    """Evaluate predictions (or a per-frame signal) on a dataset split; write the report when `out` is given."""
    ds = open_dataset(data_root)
    pred = Path(pred_dir)
    if not pred.is_dir():
        raise DatasetError(f"{pred}: prediction folder not found")
    meta = read_meta(pred)
    t_dice = float(threshold if threshold is not None else meta.get("threshold_dice", 0.5))
    t_afd = float(threshold if threshold is not None else meta.get("threshold_afd", 0.5))
    names = ds.names(split)
    if not names:
        raise DatasetError(f"{ds.root}: no clip in split {split}")
    user_signals = afd_mod.read_signal_csv(signal_csv) if signal_csv else None
    if user_signals is None and not any(pred.glob("*.npz")) and (pred / "areas.csv").is_file():
        user_signals = afd_mod.read_signal_csv(pred / "areas.csv")
    have = (lambda n: n in user_signals) if user_signals is not None else (lambda n: (pred / f"{n}.npz").is_file())
    missing = [n for n in names if not have(n)]
    if missing and not allow_missing:
        raise DatasetError(f"{pred}: no prediction for {len(missing)} of {len(names)} {split or 'all'} clips "
                           f"(first: {missing[0]}); pass --allow-missing to evaluate the others")
    names = [n for n in names if n not in set(missing)]
    if not names:
        raise DatasetError(f"{pred}: no prediction for any clip of split {split}")
    refs, ref_source, unscorable = _references(ds, names)
    fps = {n: float(ds.fps(n)) for n in names}
    teacher_path = Path(teacher_dir) if teacher_dir else None
    acc = Collected()
    for name in progress(names, desc="evaluate", unit="clip"):
        npz = pred / f"{name}.npz"
        soft = load_masks(npz) if npz.is_file() else None
        if user_signals is not None:
            acc.signals[name] = user_signals[name]
        elif soft is not None:
            acc.signals[name] = binarize(soft, t_afd).sum(axis=(1, 2)).astype(np.float64)
        teacher = None
        if teacher_path is not None:
            tpath = teacher_path / f"{name}.npz"
            if not tpath.is_file():
                raise DatasetError(f"{tpath}: teacher targets missing for {name}")
            teacher = load_masks(tpath)
            acc.teacher_sizes[name] = binarize(teacher, TEACHER_THRESHOLD).sum(axis=(1, 2)).astype(np.float64)
        if soft is not None:
            _clip_pass(ds, name, soft, npz, refs.get(name), t_dice, t_afd, acc.signals[name], compat, acc, teacher)
    return _finish(ds, pred, split, names, missing, meta, t_dice, t_afd, refs, ref_source, unscorable, fps,
                   acc, corrupted, signal_csv, teacher_path, compat, n_boot, seed, out, overlays)


def _finish(ds, pred, split, names, missing, meta, t_dice, t_afd, refs, ref_source, unscorable, fps, acc,
            corrupted, signal_csv, teacher_path, compat, n_boot, seed, out, overlays) -> dict:
    bad, bad_source = {}, None
    if corrupted:
        bad, bad_source = afd_mod.read_corrupted(corrupted), str(corrupted)
    elif (ds.root / "GroundTruth" / "corrupted.csv").is_file():
        bad_source = str(ds.root / "GroundTruth" / "corrupted.csv")
        bad = afd_mod.read_corrupted(bad_source)
    signal_label = (f"user signal {signal_csv}" if signal_csv else
                    f"mask area at threshold_afd = {t_afd:.4g} (soft >= {t_afd * 255:.1f})")
    metrics: dict = {
        "dataset": str(ds.root), "predictions": str(pred), "split": split or "all", "n_clips": len(names),
        "n_missing_predictions": len(missing), "missing_predictions": missing[:50],
        "thresholds": {"dice": t_dice, "afd": t_afd, "source": "meta.json" if meta else "default 0.5"},
        "model": {k: meta[k] for k in ("params", "blocks", "layers", "model", "name") if k in meta},
        "bootstrap_resamples": n_boot,
        "segmentation": {}, "analysis": {},
    }
    seg = metrics["segmentation"]
    if acc.tracing_rows:
        seg["vs_tracings"] = summarize_by_phase(pd.concat(acc.tracing_rows), n_boot, seed)
        seg["vs_tracings"]["note"] = f"Truth: annotator 0's trace at the traced ED/ES frames; threshold {t_dice:.4g}"
    if acc.truth_rows:
        seg["vs_ground_truth"] = summarize_overlap(pd.concat(acc.truth_rows), n_boot, seed)
        seg["vs_ground_truth"]["note"] = "Truth: phantom ground truth, every frame"
    if acc.teacher_rows:
        seg["vs_teacher"] = summarize_overlap(pd.concat(acc.teacher_rows), n_boot, seed)
        seg["vs_teacher"]["note"] = f"Truth: the teacher targets in {teacher_path} binarised at 0.5, every frame"
    table = pd.DataFrame()
    extra: dict = {"fps": fps, "refs": refs, "signals": acc.signals, "ef_table": None,
                   "corrupted": bad, "teacher_sizes": acc.teacher_sizes}
    if refs:
        table = afd_mod.phase_table(acc.signals, refs, fps, compat)
        metrics["afd"] = afd_mod.afd_metrics(table, bad, n_boot, seed)
        metrics["afd"].update({"signal": signal_label, "references": ref_source, "compat": compat,
                               "corrupted_source": bad_source, "unscorable": unscorable})
        base = afd_mod.es_baseline_table(acc.signals, refs, fps)
        metrics["es_baseline"] = afd_mod.afd_metrics(base, bad, n_boot, seed)
        metrics["es_baseline"].update({"signal": signal_label, "rule": "EchoNet find_peaks, nearest to human ES",
                                       "n_no_peak": int(base["NoPeak"].sum())})
        if acc.teacher_sizes:
            t_table = afd_mod.phase_table(acc.teacher_sizes, refs, fps, compat)
            metrics["teacher_afd"] = afd_mod.afd_metrics(t_table, bad, n_boot, seed)
            t_base = afd_mod.es_baseline_table(acc.teacher_sizes, refs, fps)
            metrics["teacher_es_baseline"] = afd_mod.afd_metrics(t_base, bad, n_boot, seed)
            metrics["teacher_es_baseline"]["rule"] = "DeepLabv3 ES baseline: EchoNet find_peaks on teacher areas"
        if acc.truth_events and getattr(ds, "has_tracings", False):
            truth_table = afd_mod.phase_table(acc.signals, acc.truth_events, fps, compat)
            metrics["afd_vs_ground_truth"] = afd_mod.afd_metrics(truth_table, bad, n_boot, seed)
        per_clip = afd_mod.clip_errors(table)
        an = metrics["analysis"]
        an["afd_by_fps"] = afd_by_fps(per_clip).to_dict(orient="records")
        an["error_concentration"] = {}
        for phase in ("ED", "ES"):
            errs = per_clip[phase].dropna().to_numpy()
            if errs.size:
                c = error_concentration(errs)
                an["error_concentration"][phase] = {k: c[k] for k in ("n", "frac_50", "frac_80")}
                extra.setdefault("concentration", {})[phase] = c
        an["label_noise"] = _label_noise(table, acc.truth_events if getattr(ds, "has_tracings", False) else {})
        if acc.ef_rows:
            an["ef"], extra["ef_table"] = _ef_metrics(acc.ef_rows)
        extra["per_clip"] = per_clip
    extra["phase_table"] = table
    if out is not None:
        from echodfkd.report.evaluation import write_report
        write_report(Path(out), metrics, extra, ds, pred, teacher_path, t_dice, overlays)
    return metrics


def report_sweep(sweep_dir: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Tables 1-2 and scaling-law figures for a sweep folder (see echodfkd.evaluate.scaling)."""
    from echodfkd.report.sweep import write_sweep_report
    return write_sweep_report(Path(sweep_dir), Path(out))
