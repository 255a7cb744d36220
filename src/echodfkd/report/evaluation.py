"""Write an evaluation report: metrics.json, report.md, per-clip CSVs, figures/*.png and overlays/*.gif."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from echodfkd.errors import EchoDFKDError
from echodfkd.evaluate.runner import score_predictions
from echodfkd.io.atomic import save_text
from echodfkd.io.records import EvaluationMetrics
from echodfkd.measures.masks import binarize
from echodfkd.measures.phases import echonet_es_frames, find_phase_frame
from echodfkd.report import figures
from echodfkd.report.overlays import save_overlay
from echodfkd.report.tables import afd_table, fmt, markdown, segmentation_table, table2


def _picks(per_clip: pd.DataFrame | None, names: list[str], k: int) -> list[tuple[str, str]]:
    """Clips to show: best, median and worst by ED+ES error (else the first ones)."""
    if k <= 0:
        return []
    if per_clip is None or per_clip.empty:
        return [(n, "") for n in names[:k]]
    total = (per_clip["ED"].fillna(0) + per_clip["ES"].fillna(0)).sort_values(kind="stable")
    order = list(total.index)
    idx = sorted({0, len(order) // 2, len(order) - 1})[:k]
    tags = {0: "best", len(order) // 2: "median", len(order) - 1: "worst"}
    return [(order[i], tags[i]) for i in idx]


def _table2_rows(metrics: dict) -> list[dict]:
    rows = []
    model = metrics.get("model", {})
    for key, method in (("afd", "this model, median-block method"),
                        ("es_baseline", "this model, find_peaks ES rule"),
                        ("teacher_afd", "teacher, median-block method"),
                        ("teacher_es_baseline", "teacher, find_peaks ES rule (DeepLabv3 baseline)")):
        m = metrics.get(key)
        if not m:
            continue
        full, clean = m.get("full", {}), m.get("clean", {})
        rows.append({"method": method, "params": model.get("params") if key in ("afd", "es_baseline") else None,
                     "aFD_ED": full.get("aFD_ED"), "aFD_ES": full.get("aFD_ES"),
                     "clean_aFD_ED": clean.get("aFD_ED"), "clean_aFD_ES": clean.get("aFD_ES"),
                     "n": full.get("n_clips")})
    return rows


def _markdown(metrics: dict, figs: list[Path], gifs: list[Path], out: Path) -> str:
    th = metrics["thresholds"]
    lines = ["# EchoDFKD evaluation report", "",
             f"- Dataset: `{metrics['dataset']}` (split {metrics['split']}, {metrics['n_clips']} clips evaluated, "
             f"{metrics['n_missing_predictions']} without predictions)",
             f"- Predictions: `{metrics['predictions']}`",
             f"- Thresholds (fraction of 255, from {th['source']}): Dice {th['dice']:.4g}, aFD area {th['afd']:.4g}",
             ""]
    seg = metrics.get("segmentation", {})
    titles = {"vs_tracings": "Segmentation against human tracings (traced ED/ES frames)",
              "vs_ground_truth": "Segmentation against phantom ground truth (every frame)",
              "vs_teacher": "Agreement with the teacher (every frame)",
              "rv_vs_ground_truth": "RV segmentation against phantom ground truth (every frame)",
              "rv_vs_teacher": "RV agreement with the RV teacher (every frame)"}
    for key, title in titles.items():
        if key in seg:
            lines += [f"## {title}", "", segmentation_table(seg[key]),
                      "Per-video mean: mean over each video's frames, then over videos (the paper's Table 1). "
                      "Pooled: 2·ΣI / (ΣU + ΣI) over all pixels (EchoNet's). Brackets: bootstrap 90 % interval "
                      f"({metrics.get('bootstrap_resamples', '?')} resamples of videos). "
                      f"{seg[key].get('note', '')}.", ""]
    if "afd" in metrics:
        a = metrics["afd"]
        lines += ["## Phase detection (aFD)", "",
                  f"Signal: {a['signal']}. References: {a['references']}. Block distance: `{a['compat']}`. "
                  f"Clean subset excludes {a['n_corrupted_excluded']} clip(s) listed in "
                  f"`{a['corrupted_source'] or 'no corrupted list'}`. No example is removed from the full set.",
                  "", afd_table(a), "### Table 2 (paper layout)", "", table2(_table2_rows(metrics))]
        if a.get("unscorable"):
            lines += [f"Clips without usable references ({len(a['unscorable'])}): "
                      + "; ".join(f"{k}: {v}" for k, v in list(a["unscorable"].items())[:10]), ""]
        if "afd_vs_ground_truth" in metrics:
            g = metrics["afd_vs_ground_truth"]["full"]
            lines += [f"Against the phantom's true ED/ES frames instead of the human ones: aFD ED "
                      f"{fmt(g.get('aFD_ED'))}, ES {fmt(g.get('aFD_ES'))} frames.", ""]
    an = metrics.get("analysis", {})
    if an.get("afd_by_fps"):
        lines += ["## aFD against sampling rate", "",
                  markdown(["FPS bin (frames/s)", "Clips", "aFD ED (frames)", "aFD ES (frames)", "aFD ED (ms)",
                            "aFD ES (ms)"],
                           [[b["bin"], b["n"], fmt(b["aFD_ED"]), fmt(b["aFD_ES"]), fmt(b["ms_ED"], 1),
                             fmt(b["ms_ES"], 1)] for b in an["afd_by_fps"]])]
    if an.get("afd_by_fps_note"):
        lines += [f"Note: {an['afd_by_fps_note']}.", ""]
    if an.get("error_concentration"):
        lines += ["## Error concentration", "",
                  markdown(["Phase", "Clips", "Share of clips carrying 50 % of squared error",
                            "... carrying 80 %"],
                           [[p, c["n"], f"{100 * c['frac_50']:.1f} %", f"{100 * c['frac_80']:.1f} %"]
                            for p, c in an["error_concentration"].items()])]
    if an.get("ef"):
        lines += _ef_section(an["ef"])
    if an.get("label_noise"):
        lines += _label_noise_section(an["label_noise"])
    if figs:
        lines += ["## Figures", ""] + [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figs] + [""]
    if gifs:
        lines += ["## Overlays (student contour green, teacher red, shared yellow)", ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in gifs] + [""]
    return "\n".join(lines)


def _ef_section(ef: dict) -> list[str]:
    """EF agreement table; r only from 3 clips up, estimates outside 0-100 % counted."""
    text = ("area = 100·(A_ED − A_ES)/A_ED (the reference code's estimate); arealength uses "
            "V = 8A²/(3πL) with L the mask's max Feret diameter. 'human frames' = traced frames, "
            "'found frames' = frames found by the median-block method.")
    for note in sorted({v["pearson_r_note"] for v in ef.values() if v.get("pearson_r_note")}):
        text += f" Pearson r {note}."
    if any(v.get("n_outside_range") for v in ef.values()):
        text += (" Estimates outside 0-100 % are physiologically impossible (the masks are wrong at those "
                 "frames); they are kept in MAE and bias and drawn at the plot's edge.")
    return ["## EF from mask areas", "",
            markdown(["Estimate", "Clips", "Pearson r", "MAE (EF %)", "Bias (EF %)", "Outside 0-100 %"],
                     [[k.replace("_", " "), v["n"], fmt(v["pearson_r"], 3), fmt(v["mae"]), fmt(v["bias"]),
                       v.get("n_outside_range", "—")] for k, v in ef.items()]), text, ""]


def _label_noise_section(noise: dict) -> list[str]:
    """Laplace+uniform fits per phase, or why a phase's fit is left out."""
    fitted = {p: f for p, f in noise.items() if "left_out" not in f}
    lines = ["## Frame-label noise (Laplace + uniform fit)", ""]
    if fitted:
        lines += [markdown(["Phase", "Differences", "n", "μ (frames)", "b, mean abs. deviation (frames)",
                            "uniform weight w"],
                           [[p, f["source"], f["n"], fmt(f["mu"]), fmt(f["b"]), fmt(f["w"], 3)]
                            for p, f in fitted.items()]),
                  "Discretised likelihood (each integer difference a ±0.5-frame bin); the uniform give-up "
                  f"part spans {_support(next(iter(fitted.values())))} frames.", ""]
    for p, f in noise.items():
        if "left_out" in f:
            lines += [f"{p}: no fit ({f['left_out']}).", ""]
    return lines


def _support(fit: dict) -> str:
    lo, hi = fit.get("support", [None, None])
    return "?" if lo is None else f"[{lo:g}, {hi:g}]"


def evaluate_predictions(data_root: str | os.PathLike, pred_dir: str | os.PathLike, split: str | None = "TEST",
                         out: str | os.PathLike | None = None, overlays: int = 3, **options: Any) -> dict:
    """Score predictions (options of `evaluate.runner.score_predictions`); write the report under `out` if given."""
    scored = score_predictions(data_root, pred_dir, split, **options)
    if out is not None:
        write_report(Path(out), scored.metrics, scored.extra, scored.ds, scored.pred, scored.teacher,
                     scored.t_dice, overlays)
    return scored.metrics


def write_report(out: Path, metrics: dict, extra: dict, ds, pred: Path, teacher_path: Path | None,
                 t_dice: float, overlays: int) -> None:
    """Write metrics.json, report.md, phases.csv/ef.csv, figures and overlays under `out`."""
    fig_dir = out / "figures"
    figs: list[Path] = []
    gifs: list[Path] = []
    table: pd.DataFrame = extra.get("phase_table", pd.DataFrame())
    if not table.empty:
        save_text(out / "phases.csv", table.to_csv(index=False))
    if extra.get("ef_table") is not None:
        save_text(out / "ef.csv", extra["ef_table"].to_csv(index=False))
    an = metrics.get("analysis", {})
    if len(an.get("afd_by_fps") or []) >= 2:  # one bin is a note in report.md, not a plot
        figs.append(figures.afd_vs_fps(pd.DataFrame(an["afd_by_fps"]), fig_dir / "afd_vs_fps.png"))
    if extra.get("concentration"):
        figs.append(figures.error_concentration(extra["concentration"], fig_dir / "error_concentration.png"))
    ef = extra.get("ef_table")
    if ef is not None and "EF_area_found" in ef and np.isfinite(ef["EF_ref"].to_numpy(float)).sum() >= 2:
        series = {"area ratio, found frames": ef["EF_area_found"].to_numpy(),
                  "area-length, found frames": ef["EF_arealength_found"].to_numpy()}
        stats = {"area ratio, found frames": an["ef"].get("area_at_found_frames", {}),
                 "area-length, found frames": an["ef"].get("arealength_at_found_frames", {})}
        figs.append(figures.ef_scatter(series, ef["EF_ref"].to_numpy(), stats, fig_dir / "ef_scatter.png"))
    refs, signals, fps = extra.get("refs", {}), extra.get("signals", {}), extra.get("fps", {})
    compat = metrics.get("afd", {}).get("compat", "paper")
    for name, tag in _picks(extra.get("per_clip"), list(signals), overlays):
        sig, ref = signals.get(name), refs.get(name, {})
        if sig is None:
            continue
        found = {p: [find_phase_frame(sig, r, p, compat) for r in ref.get(p, [])] for p in ("ED", "ES")}
        label = "LV mask area (pixels)" if not metrics.get("afd", {}).get("signal", "").startswith("user") \
            else "signal (user units)"
        title = f"{name} ({tag} aFD clip)" if tag else name
        figs.append(figures.area_curve(sig, fig_dir / f"area_curve_{tag or 'clip'}_{name}.png", title,
                                       fps.get(name), ref, found, label, echonet_es_frames(sig)))
        npz = pred / f"{name}.npz"
        if npz.is_file():
            gifs.append(_overlay(ds, name, npz, teacher_path, t_dice, out / "overlays" / f"{name}.gif"))
    gifs = [g for g in gifs if g is not None]
    metrics["figures"] = [p.relative_to(out).as_posix() for p in figs + gifs]
    EvaluationMetrics.parse(metrics, out / EvaluationMetrics.FILE).write(out / EvaluationMetrics.FILE)
    save_text(out / "report.md", _markdown(metrics, figs, gifs, out))


def _overlay(ds, name: str, npz: Path, teacher_path: Path | None, t_dice: float, path: Path) -> Path | None:
    from echodfkd.evaluate.predictions import TEACHER_THRESHOLD, load_masks
    try:
        frames, fps = ds.video(name)
    except EchoDFKDError:
        return None  # an unreadable video is reported by `check`; the overlay is only an illustration
    student = binarize(load_masks(npz), t_dice)
    teacher = None
    if teacher_path is not None and (teacher_path / f"{name}.npz").is_file():
        teacher = binarize(load_masks(teacher_path / f"{name}.npz"), TEACHER_THRESHOLD)
    return save_overlay(frames, student, path, fps, teacher)
