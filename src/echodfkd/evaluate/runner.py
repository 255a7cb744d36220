"""`score_predictions`: one pass over a prediction folder -> Dice/IoU, aFD, analyses (the metrics dict).

The report (metrics.json, report.md, figures) is written by `echodfkd.report.evaluation.evaluate_predictions`;
this stage imports nothing from the report package.

Prediction folder (`PRED/`): `<FileName>.npz` with `masks` uint8 soft (T, H, W), optional `areas.csv` and
`meta.json` (`threshold_dice`, `threshold_afd`; 0.5 each when absent, which reproduces logit > 0).
Videos are never decoded except for the few overlay clips; the phase part works on 1-D signals only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from echodfkd.data import open_dataset
from echodfkd.data.check import phantom_corrupted_path, read_corrupted
from echodfkd.errors import DatasetError
from echodfkd.evaluate import afd as afd_mod
from echodfkd.evaluate.analysis import (afd_by_fps, ef_agreement, ef_area_length, ef_area_ratio,
                                        error_concentration, fps_bins_note, long_axis)
from echodfkd.evaluate.noise import fit_or_reason
from echodfkd.evaluate.predictions import TEACHER_THRESHOLD, load_masks, read_meta
from echodfkd.evaluate.segmentation import frame_rows, summarize_by_phase, summarize_overlap, tracing_rows
from echodfkd.measures.masks import binarize
from echodfkd.measures.phases import find_phase_frame, nearest_frame
from echodfkd.progress import progress

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
    rv_truth_rows: list[pd.DataFrame] = field(default_factory=list)     # RV channel vs phantom RV truth
    rv_teacher_rows: list[pd.DataFrame] = field(default_factory=list)   # RV channel vs the RV teacher


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


def _clip_pass(ds, name: str, soft: np.ndarray, path: Path, refs: dict | None, t_dice: float, t_afd: float,
               signal: np.ndarray, compat: str, acc: Collected, teacher: np.ndarray | None,
               rv: tuple[np.ndarray, float, np.ndarray | None] | None = None) -> None:
    """Everything per clip that needs masks: overlaps, teacher agreement, EF areas and long axes.

    `rv` = (RV soft masks, their Dice threshold, the RV teacher's or None) for a 2-channel student.
    """
    n = soft.shape[0]
    binary = binarize(soft, t_dice)
    if refs and getattr(ds, "has_tracings", False):
        acc.tracing_rows.append(tracing_rows(ds, name, soft, t_dice, path))
    gt = ds.ground_truth(name) if ds.has_ground_truth else None
    if rv is not None:
        rv_soft, t_rv, rv_teacher = rv
        if gt is not None and "rv" in gt:
            acc.rv_truth_rows.append(frame_rows(name, rv_soft, np.asarray(gt["rv"], dtype=bool), t_rv, path))
        if rv_teacher is not None:
            acc.rv_teacher_rows.append(frame_rows(name, rv_soft, binarize(rv_teacher, TEACHER_THRESHOLD), t_rv, path))
    if gt is not None and "lv" in gt:
        acc.truth_rows.append(frame_rows(name, soft, np.asarray(gt["lv"], dtype=bool), t_dice, path))
        acc.truth_events[name] = {"ED": [int(f) for f in np.ravel(gt["ed"])],
                                  "ES": [int(f) for f in np.ravel(gt["es"])]}
    if teacher is not None:
        acc.teacher_rows.append(frame_rows(name, soft, binarize(teacher, TEACHER_THRESHOLD), t_dice, path))
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
        if d:
            fit = fit_or_reason(np.asarray(d, float))  # small samples: a reason instead of a degenerate fit
            fit["source"] = source
            out[phase] = fit
    return out


@dataclass
class Context:
    """What one evaluation is about: dataset, predictions, clips, thresholds and references."""

    ds: object
    pred: Path
    split: str | None
    names: list[str]
    missing: list[str]
    meta: dict
    t_dice: float
    t_afd: float
    signal_label: str
    refs: dict
    ref_source: str
    unscorable: dict
    fps: dict
    teacher: Path | None
    compat: str
    n_boot: int
    seed: int


@dataclass
class Scored:
    """What `score_predictions` returns: the metrics plus what the report writer needs beside them."""

    metrics: dict
    extra: dict
    ds: object
    pred: Path
    teacher: Path | None
    t_dice: float


def score_predictions(data_root: str | os.PathLike, pred_dir: str | os.PathLike, split: str | None = "TEST",
                      teacher_dir: str | os.PathLike | None = None, corrupted: str | os.PathLike | None = None,
                      signal_csv: str | os.PathLike | None = None, threshold: float | None = None,
                      compat: str = "paper", n_boot: int = 10000, allow_missing: bool = False,
                      seed: int = 0) -> Scored:
    """Score predictions (or a per-frame signal) on a dataset split; writes nothing."""
    ds = open_dataset(data_root)
    pred = Path(pred_dir)
    if not pred.is_dir():
        raise DatasetError(f"{pred}: prediction folder not found")
    meta = read_meta(pred)
    t_dice = float(threshold if threshold is not None else meta.get("threshold_dice", 0.5))
    t_afd = float(threshold if threshold is not None else meta.get("threshold_afd", 0.5))
    t_rv = float(threshold if threshold is not None else rv_threshold(meta))
    names = ds.names(split)
    if not names:
        raise DatasetError(f"{ds.root}: no clip in split {split}")
    user_signals, label = None, f"mask area at threshold_afd = {t_afd:.4g} (soft >= {t_afd * 255:.1f})"
    if signal_csv:
        user_signals, label = afd_mod.read_signal_csv(signal_csv), f"user signal {signal_csv}"
    elif not any(pred.glob("*.npz")) and (pred / "areas.csv").is_file():
        user_signals, label = afd_mod.read_signal_csv(pred / "areas.csv"), f"areas from {pred / 'areas.csv'}"
    have = (lambda n: n in user_signals) if user_signals is not None else (lambda n: (pred / f"{n}.npz").is_file())
    missing = [n for n in names if not have(n)]
    if missing and not allow_missing:
        raise DatasetError(f"{pred}: no prediction for {len(missing)} of {len(names)} {split or 'all'} clips "
                           f"(first: {missing[0]}); pass --allow-missing to evaluate the others")
    names = [n for n in names if n not in set(missing)]
    if not names:
        raise DatasetError(f"{pred}: no prediction for any clip of split {split}")
    refs, ref_source, unscorable = _references(ds, names)
    ctx = Context(ds, pred, split, names, missing, meta, t_dice, t_afd, label, refs, ref_source, unscorable,
                  {n: float(ds.fps(n)) for n in names}, Path(teacher_dir) if teacher_dir else None, compat,
                  n_boot, seed)
    acc = Collected()
    for name in progress(names, desc="evaluate", unit="clip"):
        npz = pred / f"{name}.npz"
        soft = load_masks(npz) if npz.is_file() else None
        if user_signals is not None:
            acc.signals[name] = user_signals[name]
        elif soft is not None:
            acc.signals[name] = binarize(soft, t_afd).sum(axis=(1, 2)).astype(np.float64)
        teacher = None
        rv_soft = _optional_masks(npz, "rv") if soft is not None else None
        rv_teacher = None
        if ctx.teacher is not None:
            tpath = ctx.teacher / f"{name}.npz"
            if not tpath.is_file():
                raise DatasetError(f"{tpath}: teacher targets missing for {name}")
            teacher = load_masks(tpath)
            acc.teacher_sizes[name] = binarize(teacher, TEACHER_THRESHOLD).sum(axis=(1, 2)).astype(np.float64)
            rv_teacher = _optional_masks(tpath, "rv") if rv_soft is not None else None
        if soft is not None:
            _clip_pass(ds, name, soft, npz, refs.get(name), t_dice, t_afd, acc.signals[name], compat, acc, teacher,
                       None if rv_soft is None else (rv_soft, t_rv, rv_teacher))
    metrics = _header(ctx)
    metrics["segmentation"] = _segmentation_metrics(ctx, acc)
    if acc.rv_truth_rows or acc.rv_teacher_rows:
        metrics["thresholds"]["rv_dice"] = t_rv
        metrics["segmentation"].update(_rv_metrics(ctx, acc, t_rv))
    extra = _phase_metrics(ctx, acc, metrics, corrupted)
    return Scored(metrics, extra, ds, pred, ctx.teacher, t_dice)


def _header(ctx: Context) -> dict:
    meta = ctx.meta
    return {
        "dataset": str(ctx.ds.root), "predictions": str(ctx.pred), "split": ctx.split or "all",
        "n_clips": len(ctx.names), "n_missing_predictions": len(ctx.missing),
        "missing_predictions": ctx.missing[:50],
        "thresholds": {"dice": ctx.t_dice, "afd": ctx.t_afd, "source": "meta.json" if meta else "default 0.5"},
        "model": {k: meta[k] for k in ("params", "blocks", "layers", "model", "name") if k in meta},
        "bootstrap_resamples": ctx.n_boot, "segmentation": {}, "analysis": {},
    }


def _segmentation_metrics(ctx: Context, acc: Collected) -> dict:
    seg: dict = {}
    if acc.tracing_rows:
        seg["vs_tracings"] = summarize_by_phase(pd.concat(acc.tracing_rows), ctx.n_boot, ctx.seed)
        seg["vs_tracings"]["note"] = (f"Truth: annotator 0's trace at the traced ED/ES frames; "
                                      f"threshold {ctx.t_dice:.4g}")
    if acc.truth_rows:
        seg["vs_ground_truth"] = summarize_overlap(pd.concat(acc.truth_rows), ctx.n_boot, ctx.seed)
        seg["vs_ground_truth"]["note"] = "Truth: phantom ground truth, every frame"
    if acc.teacher_rows:
        seg["vs_teacher"] = summarize_overlap(pd.concat(acc.teacher_rows), ctx.n_boot, ctx.seed)
        seg["vs_teacher"]["note"] = f"Truth: the teacher targets in {ctx.teacher} binarised at 0.5, every frame"
    return seg


def rv_threshold(meta: dict) -> float:
    """The RV channel's Dice threshold: PRED/meta.json's `thresholds_rv`, else the run's config.json, else 0.5."""
    from echodfkd.io.records import RecordError, StudentConfig

    found = meta.get("thresholds_rv")
    run = Path(meta["model"]) / StudentConfig.FILE if meta.get("model") else None
    if not isinstance(found, dict) and run is not None and run.is_file():  # predictions made before meta had it
        try:
            rv = StudentConfig.read(run).thresholds_rv
            found = rv.to_dict() if rv is not None else None
        except RecordError:
            found = None
    value = found.get("dice") if isinstance(found, dict) else None
    return float(value) if isinstance(value, (int, float)) and 0.0 <= value <= 1.0 else 0.5


def _optional_masks(path: Path, key: str) -> np.ndarray | None:
    """`key` soft masks of an npz, or None when the file has no such array."""
    with np.load(path, allow_pickle=False) as data:
        if key not in data.files:
            return None
    return load_masks(path, key)


def _rv_metrics(ctx: Context, acc: Collected, t_rv: float) -> dict:
    """RV Dice/IoU of a 2-channel student against the phantom's RV truth and the RV teacher, every frame."""
    seg: dict = {}
    if acc.rv_truth_rows:
        seg["rv_vs_ground_truth"] = summarize_overlap(pd.concat(acc.rv_truth_rows), ctx.n_boot, ctx.seed)
        seg["rv_vs_ground_truth"]["note"] = f"Truth: phantom RV ground truth, every frame; RV threshold {t_rv:.4g}"
    if acc.rv_teacher_rows:
        seg["rv_vs_teacher"] = summarize_overlap(pd.concat(acc.rv_teacher_rows), ctx.n_boot, ctx.seed)
        seg["rv_vs_teacher"]["note"] = (f"Truth: the RV teacher targets ('rv') in {ctx.teacher} binarised at "
                                        f"0.5, every frame; RV threshold {t_rv:.4g}")
    return seg


def _corrupted(ctx: Context, corrupted: str | os.PathLike | None) -> tuple[dict, str | None]:
    if corrupted:
        return read_corrupted(corrupted), str(corrupted)
    truth = phantom_corrupted_path(ctx.ds.root)
    if truth.is_file():
        return read_corrupted(truth), str(truth)
    return {}, None


def _phase_metrics(ctx: Context, acc: Collected, metrics: dict, corrupted) -> dict:
    """aFD (method, find_peaks baseline, teacher), analyses; returns the extras the report draws."""
    bad, bad_source = _corrupted(ctx, corrupted)
    extra: dict = {"fps": ctx.fps, "refs": ctx.refs, "signals": acc.signals, "ef_table": None,
                   "phase_table": pd.DataFrame()}
    if not ctx.refs:
        return extra
    boot = (ctx.n_boot, ctx.seed)
    table = afd_mod.phase_table(acc.signals, ctx.refs, ctx.fps, ctx.compat)
    metrics["afd"] = afd_mod.afd_metrics(table, bad, *boot)
    metrics["afd"].update({"signal": ctx.signal_label, "references": ctx.ref_source, "compat": ctx.compat,
                           "corrupted_source": bad_source, "unscorable": ctx.unscorable})
    base = afd_mod.es_baseline_table(acc.signals, ctx.refs, ctx.fps)
    metrics["es_baseline"] = afd_mod.afd_metrics(base, bad, *boot)
    metrics["es_baseline"].update({"signal": ctx.signal_label, "rule": "EchoNet find_peaks, nearest to human ES",
                                   "n_no_peak": int(base["NoPeak"].sum())})
    if acc.teacher_sizes:
        metrics["teacher_afd"] = afd_mod.afd_metrics(
            afd_mod.phase_table(acc.teacher_sizes, ctx.refs, ctx.fps, ctx.compat), bad, *boot)
        metrics["teacher_es_baseline"] = afd_mod.afd_metrics(
            afd_mod.es_baseline_table(acc.teacher_sizes, ctx.refs, ctx.fps), bad, *boot)
        metrics["teacher_es_baseline"]["rule"] = "DeepLabv3 ES baseline: EchoNet find_peaks on teacher areas"
    traced = getattr(ctx.ds, "has_tracings", False)
    if acc.truth_events and traced:
        metrics["afd_vs_ground_truth"] = afd_mod.afd_metrics(
            afd_mod.phase_table(acc.signals, acc.truth_events, ctx.fps, ctx.compat), bad, *boot)
    per_clip = afd_mod.clip_errors(table)
    an = metrics["analysis"]
    an["afd_by_fps"] = afd_by_fps(per_clip).to_dict(orient="records")
    if fps_bins_note(an["afd_by_fps"]):
        an["afd_by_fps_note"] = fps_bins_note(an["afd_by_fps"])
    an["error_concentration"] = {}
    for phase in ("ED", "ES"):
        errs = per_clip[phase].dropna().to_numpy()
        if errs.size:
            c = error_concentration(errs)
            an["error_concentration"][phase] = {k: c[k] for k in ("n", "frac_50", "frac_80")}
            extra.setdefault("concentration", {})[phase] = c
    an["label_noise"] = _label_noise(table, acc.truth_events if traced else {})
    if acc.ef_rows:
        an["ef"], extra["ef_table"] = _ef_metrics(acc.ef_rows)
    extra.update({"per_clip": per_clip, "phase_table": table})
    return extra
