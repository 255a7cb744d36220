"""CAMUS report figures: Dice per view and image quality with EF agreement, and example ED/ES contours."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from echodfkd.io.atomic import atomic_path
from echodfkd.report.figures import DPI, ED_COLOR, ES_COLOR, plt

QUALITY_COLORS = {"Good": "tab:green", "Medium": "tab:orange", "Poor": "tab:red"}
TRUTH_COLOR, PRED_COLOR = "#ffd60a", "#30d158"


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return path


def summary(per_view: pd.DataFrame, path: str | os.PathLike, title: str) -> Path:
    """Left: per-view Dice at ED and ES by view, coloured by image quality. Right: EF against the cfg EF."""
    fig, (ax_d, ax_e) = plt.subplots(1, 2, figsize=(11, 5.2), layout="constrained")
    views = [v for v in ("4CH", "2CH") if (per_view["View"] == v).any()]
    rng = np.random.default_rng(0)  # horizontal jitter only, so overlapping points stay visible
    for i, view in enumerate(views):
        sub = per_view[per_view["View"] == view]
        for k, (phase, marker) in enumerate((("ED", "o"), ("ES", "s"))):
            x = 2 * i + k + rng.uniform(-0.18, 0.18, len(sub))
            colors = [QUALITY_COLORS.get(q, "tab:gray") for q in sub["Quality"]]
            ax_d.scatter(x, 100 * sub[f"Dice_{phase}"], c=colors, marker=marker, s=22, alpha=0.8,
                         edgecolors="black", linewidths=0.3)
            ax_d.hlines(100 * sub[f"Dice_{phase}"].mean(), 2 * i + k - 0.3, 2 * i + k + 0.3, color="black")
    ax_d.set_xticks(range(2 * len(views)), [f"{v} {p}" for v in views for p in ("ED", "ES")])
    ax_d.set_xlabel("View and phase (bar: mean)")
    ax_d.set_ylabel("Dice vs LV label (%)")
    ax_d.set_ylim(-3, 103)
    ax_d.set_title("Dice per half-sequence (circle ED, square ES)", fontsize=10)
    from matplotlib.lines import Line2D

    key = [Line2D([], [], ls="", marker="o", color=c, markeredgecolor="black", label=q)
           for q, c in QUALITY_COLORS.items() if (per_view["Quality"] == q).any()]
    if key:
        ax_d.legend(handles=key, fontsize=8, title="Image quality", title_fontsize=8, ncol=len(key),
                    loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    ref = per_view["EF_ref"].to_numpy(float)
    known = np.concatenate([ref, per_view["EF_truth"].to_numpy(float), [0.0, 100.0]])
    known = known[np.isfinite(known)]
    # A heart's EF is 0-100 %: estimates beyond the axes (a nearly empty mask) are drawn on the border.
    lo, hi = float(known.min()) - 5, float(known.max()) + 5
    for column, label, marker in (("EF_pred", "predicted masks", "o"), ("EF_truth", "true masks", "x")):
        est = per_view[column].to_numpy(float)
        ok = np.isfinite(est) & np.isfinite(ref)
        missing = int(np.isfinite(ref).sum() - ok.sum())
        out = ok & ((est < lo) | (est > hi))
        note = (f"; {missing} without an estimate" if missing else "") + \
            (f"; {out.sum()} beyond the axes, on the border (red v)" if out.any() else "")
        if ok.any():
            err = np.abs(est[ok] - ref[ok])
            inside = ok & ~out
            ax_e.scatter(ref[inside], est[inside], marker=marker, s=24, alpha=0.8,
                         label=f"{label}: n = {ok.sum()}, MAE {err.mean():.1f} %, median {np.median(err):.1f} %"
                               f"{note}")
            if out.any():
                ax_e.scatter(ref[out], np.clip(est[out], lo, hi), marker="v", s=30, color="tab:red", alpha=0.8)
        else:
            ax_e.scatter([], [], marker=marker, label=f"{label}: no estimate (empty masks){note}")
    ax_e.plot([lo, hi], [lo, hi], color="grey", ls=":", label="identity")
    ax_e.set_xlim(lo, hi)
    ax_e.set_ylim(lo, hi)
    ax_e.set_xlabel("EF from Info_<view>.cfg (%)")
    ax_e.set_ylabel("EF, single-plane area-length (%)")
    ax_e.set_title("EF from the ED/ES masks", fontsize=10)
    ax_e.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


def examples(picks: list[tuple[str, str, dict]], path: str | os.PathLike) -> Path:
    """One row per picked view: its ED and ES images with the true (yellow) and predicted (green) LV contours."""
    from skimage.measure import find_contours

    fig, axes = plt.subplots(len(picks), 2, figsize=(5.6, 3.3 * len(picks)), layout="constrained",
                             squeeze=False)
    for row, (name, tag, ex) in zip(axes, picks):
        for k, (ax, phase) in enumerate(zip(row, ("ED", "ES"))):
            ax.imshow(ex["images"][k], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            for mask, color in ((ex["truth"][k], TRUTH_COLOR), (ex["pred"][k], PRED_COLOR)):
                for c in find_contours(mask.astype(np.float32), 0.5):
                    ax.plot(c[:, 1], c[:, 0], color=color, linewidth=1.0)
            inter = np.logical_and(ex["truth"][k], ex["pred"][k]).sum()
            total = ex["truth"][k].sum() + ex["pred"][k].sum()
            dice = 2 * inter / total if total else 1.0
            ax.set_title(f"{name} {phase} ({tag}): Dice {100 * dice:.1f} %", fontsize=8,
                         color=ED_COLOR if phase == "ED" else ES_COLOR)
            ax.set_axis_off()
    fig.suptitle("LV contours: label 1 yellow, student green", fontsize=9)
    return _save(fig, path)
