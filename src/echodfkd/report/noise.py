"""`echodfkd noise` report: noise.md and one figure per frame-label column (differences and the fit)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from echodfkd.evaluate.noise import MIN_FIT_N, mixture_pmf
from echodfkd.report.tables import fmt, markdown as table


def noise_markdown(result: dict, sources: tuple[str, str]) -> str:
    """The noise report: one row per quantity, then the fits."""
    rows, notes = [], []
    for col, q in result["quantities"].items():
        if "left_out" in q:
            notes.append(f"- {col}: left out ({q['left_out']}).")
            continue
        rows.append([col, q["kind"], q["n"], fmt(q["rmse"], 3), fmt(q["rmse_floor"], 3), fmt(q["rho"], 3),
                     fmt(q["correlation_ceiling"], 3), fmt(q["bias"], 3)])
        fit = q.get("fit")
        if fit and "left_out" in fit:
            notes.append(f"- {col}: no Laplace+uniform fit ({fit['left_out']}).")
        elif fit:
            notes.append(f"- {col}: one annotator's E|X| = b = {fit['b']:.2f} frames, give-up weight "
                         f"w = {fit['w']:.3f} (of a difference), centre μ = {fit['mu']:+.2f}; "
                         f"{fit['n']} differences, support {fit['support'][0]:g} to {fit['support'][1]:g}.")
    lines = ["# Annotator noise between two rounds", "",
             f"- Round 1: `{sources[0]}`; round 2: `{sources[1]}`",
             f"- {result['clips_matched']} clip(s) in both rounds; {result['only_in_round1']} only in round 1, "
             f"{result['only_in_round2']} only in round 2 (left out).", "",
             table(["Quantity", "Kind", "Clips", "RMSE(Z1, Z2)", "RMSE floor = RMSE/√2", "ρ(Z1, Z2)",
                    "Correlation ceiling = √ρ", "Bias Z1 − Z2"], rows),
             "RMSE floor: the best RMSE any model can reach against one round; correlation ceiling: the best "
             "correlation with one round (supplement §2; assumes two iid rounds around one truth).", ""]
    if notes:
        lines += ["## Laplace + uniform fit of frame-label differences", "",
                  f"Kernel: the difference of two iid Laplace annotators, discretised to whole frames, plus "
                  f"a uniform give-up part; fitted from {MIN_FIT_N} differences up.", ""] + notes + [""]
    return "\n".join(lines)


def difference_figure(column: str, d: np.ndarray, fit: dict | None, path: str | os.PathLike) -> Path:
    """Counts of each integer difference Z1 − Z2 with the fitted mixture's expected counts."""
    from echodfkd.report.figures import _save, plt  # the shared headless backend and atomic save

    d = np.asarray(d, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    span = int(max(np.max(np.abs(d)), 3) + 1)
    k = np.arange(-span, span + 1)
    counts = np.array([(d == v).sum() for v in k])
    ax.bar(k, counts, width=0.85, color="tab:grey", alpha=0.7, label=f"observed ({d.size} clips)")
    if fit and "b" in fit:
        ax.plot(k, d.size * mixture_pmf(fit, k), "o-", color="tab:orange", ms=3, lw=1.2,
                label=f"fit: one annotator's E|X| = {fit['b']:.2f} frames, w = {fit['w']:.3f}")
    elif fit:
        ax.text(0.02, 0.97, f"no fit: {fit['left_out']}", transform=ax.transAxes, va="top", fontsize=8,
                color="tab:red", wrap=True)
    ax.set_xlabel(f"{column}: round 1 − round 2 (frames)")
    ax.set_ylabel("Clips (count)")
    ax.set_title(f"Frame-label differences between rounds: {column}")
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)
