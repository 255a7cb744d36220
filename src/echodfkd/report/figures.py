"""Report figures (matplotlib, headless Agg): every axis labelled with its unit, constrained layout, 120 dpi."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import transforms  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from echodfkd.io.atomic import atomic_path  # noqa: E402

DPI = 120
ED_COLOR, ES_COLOR = "tab:red", "tab:blue"


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return path


def afd_vs_fps(bins: pd.DataFrame, path: str | os.PathLike, title: str = "aFD against sampling rate") -> Path:
    """Fig. 4: aFD per FPS bin in frames (with s.e.m. bars and clip counts) and in milliseconds."""
    fig, (ax_f, ax_ms) = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
    x = np.arange(len(bins))
    w = 0.38
    for k, (phase, color) in enumerate((("ED", ED_COLOR), ("ES", ES_COLOR))):
        off = (k - 0.5) * w
        ax_f.bar(x + off, bins[f"aFD_{phase}"], w, yerr=bins[f"sem_{phase}"], color=color, alpha=0.8,
                 capsize=3, label=phase)
        ax_ms.bar(x + off, bins[f"ms_{phase}"], w, color=color, alpha=0.8)
    ticks = [f"{b}\n(n={n})" for b, n in zip(bins["bin"], bins["n"])]  # clip counts under each bin
    for ax in (ax_f, ax_ms):
        ax.set_xticks(x, ticks)
        ax.set_xlabel("Sampling rate (frames/s); n = clips per bin")
        ax.margins(y=0.08)
    ax_f.set_ylabel("aFD (frames)")
    ax_f.set_title("Error in frames (bars: ± s.e.m.)")
    ax_ms.set_ylabel("aFD (ms)")
    ax_ms.set_title("Error in milliseconds")
    fig.legend(*ax_f.get_legend_handles_labels(), title="Phase", loc="outside right center")
    fig.suptitle(title)
    return _save(fig, path)


def error_concentration(curves: dict[str, dict], path: str | os.PathLike,
                        title: str = "Concentration of the squared aFD error") -> Path:
    """Fig. 10: cumulative share of squared error against share of clips (worst clips first)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    colors = {"ED": ED_COLOR, "ES": ES_COLOR}
    for phase, c in curves.items():
        ax.plot(100 * c["share_clips"], 100 * c["share_error"], color=colors.get(phase), lw=2,
                label=f"{phase}: {100 * c['frac_50']:.0f} % of clips carry 50 %, "
                      f"{100 * c['frac_80']:.0f} % carry 80 %")
    ax.plot([0, 100], [0, 100], ls=":", color="grey", label="error spread evenly")
    for level in (50, 80):
        ax.axhline(level, color="grey", lw=0.6, ls="--")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 102)
    ax.set_xlabel("Share of clips, worst first (%)")
    ax.set_ylabel("Cumulative share of squared error (%)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def area_curve(signal: np.ndarray, path: str | os.PathLike, name: str, fps: float | None = None,
               human: dict | None = None, found: dict | None = None, ylabel: str = "LV mask area (pixels)",
               baseline_es: Sequence[int] = ()) -> Path:
    """The per-frame signal with its median, the found and the human ED/ES frames marked."""
    sig = np.asarray(signal, dtype=float)
    t = np.arange(sig.size)
    fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
    ax.plot(t, sig, color="black", lw=1.2, label="signal")
    ax.axhline(np.median(sig), color="grey", ls=":", lw=1, label="median")
    for phase, color in (("ED", ED_COLOR), ("ES", ES_COLOR)):
        for f in (found or {}).get(phase, []):
            ax.plot(f, sig[f], "o", ms=8, color=color, label=f"found {phase}")
        for h in (human or {}).get(phase, []):
            ax.axvline(h, color=color, ls="--", lw=1.2, label=f"human {phase}")
    if len(baseline_es):
        below = transforms.offset_copy(ax.transData, fig=fig, y=-9, units="points")  # clear of found ES
        ax.plot(list(baseline_es), sig[list(baseline_es)], "^", ms=7, mfc="none", color="tab:green",
                transform=below, label="find_peaks ES (EchoNet rule)")
    ax.set_xlabel("Frame index")
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, max(sig.size - 1, 1))
    ax.margins(y=0.12)
    if fps and fps > 0:
        sec = ax.secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
        sec.set_xlabel("Time (s)")
    ax.set_title(name)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              borderaxespad=0)
    return _save(fig, path)


def ef_scatter(estimates: dict[str, np.ndarray], reference: np.ndarray, stats: dict[str, dict],
               path: str | os.PathLike, title: str = "EF from mask areas against the FileList EF") -> Path:
    """EF estimates (one marker per method) against the reference EF on fixed 0-100 % axes.

    r is written only where `stats` has one (3 clips or more); estimates outside 0-100 % are drawn at
    the nearest edge with a red edge colour and counted in the legend, never off the axes.
    """
    fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
    ref = np.asarray(reference, dtype=float)
    markers = ("o", "s", "^", "D")
    for k, (label, est) in enumerate(estimates.items()):
        est = np.asarray(est, dtype=float)
        s = stats.get(label, {})
        r, mae = s.get("pearson_r"), s.get("mae")
        parts = [f"n = {s.get('n', int(np.isfinite(est).sum()))}"]
        parts.append(f"r = {r:.2f}" if r is not None else "r: too few clips" if s.get("n", 0) < 3 else "r: —")
        if mae is not None:
            parts.append(f"MAE = {mae:.1f} %")
        outside = np.isfinite(est) & ((est < 0) | (est > 100))
        inside = np.isfinite(est) & ~outside
        sc = ax.scatter(ref[inside], est[inside], s=18, marker=markers[k % len(markers)], alpha=0.7,
                        label=f"{label}: " + ", ".join(parts))
        if outside.any():
            ax.scatter(ref[outside], np.clip(est[outside], 0, 100), s=30, marker=markers[k % len(markers)],
                       facecolors="none", edgecolors="tab:red", linewidths=1.2,
                       label=f"{label}: {int(outside.sum())} outside 0-100 %, drawn at the edge",
                       zorder=sc.get_zorder() + 1)
    ax.plot([0, 100], [0, 100], color="grey", ls=":", label="identity")
    ax.set_xlim(-3, 103)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("Reference EF (%)")
    ax.set_ylabel("Estimated EF (%)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path)


def scaling_laws(sweep: pd.DataFrame, laws: dict, transformed: dict[str, np.ndarray],
                 path: str | os.PathLike, title: str = "Scaling laws over the (B, l) sweep") -> Path:
    """Figs. 6/11/12: each fitted quantity against parameters (log axis) with the fit and saturation point.

    Colour = blocks B, marker = layers l (one shared key), so no per-point text can collide.
    """
    from matplotlib.lines import Line2D

    metrics = [m for m in ("afd", "iou", "dice") if m in laws]
    ncols = max(len(metrics), 1)
    fig, axes = plt.subplots(1, ncols, figsize=(4.8 * ncols + 1.2, 4.8), layout="constrained", squeeze=False)
    params = sweep["params"].to_numpy(dtype=float)
    blocks, layers = sweep["blocks"].to_numpy(), sweep["layers"].to_numpy()
    colours = {b: plt.cm.viridis(i / max(len(set(blocks)) - 1, 1)) for i, b in enumerate(sorted(set(blocks)))}
    markers = dict(zip(sorted(set(layers)), "osD^vP*X"))
    for ax, metric in zip(axes[0], metrics):
        law, y = laws[metric], transformed[metric]
        for b, l in sorted(set(zip(blocks, layers))):
            sel = (blocks == b) & (layers == l)
            ax.scatter(params[sel], y[sel], color=colours[b], marker=markers[l], s=36, zorder=3,
                       edgecolors="black", linewidths=0.4)
        handles = []
        if law.get("slope") is not None:
            xs = np.geomspace(params.min(), params.max(), 50)
            ci = law.get("slope_ci90")
            ci_txt = f" [{ci[0]:.3f}, {ci[1]:.3f}] (90 %)" if ci else ""
            r2_txt = f", r² {law['r2']:.3f}" if law.get("r2") is not None else ""
            handles += ax.plot(xs, law["intercept"] + law["slope"] * np.log(xs), color="tab:orange",
                               label=f"fit: slope {law['slope']:.3f}{ci_txt} per ln(params){r2_txt}")
        if law.get("note"):  # too few runs: say so on the panel instead of an exact-looking fit
            ax.text(0.03, 0.97, law["note"].replace(": ", ":\n", 1), transform=ax.transAxes, fontsize=7,
                    va="top", color="tab:red")
        sat = (law.get("saturation") or {}).get("params")
        if sat is not None:
            handles.append(ax.axvline(sat, color="tab:red", ls="--", label=f"saturation at {sat:,.0f} params"))
        ax.set_xscale("log")
        ax.set_xlabel("Parameters (count, log scale)")
        ax.set_ylabel(f"{law['quantity']} (dimensionless)")
        ax.set_title(f"{law['quantity']} ({law['better']} is better)", fontsize=10)
        ax.margins(x=0.08, y=0.1)
        if handles:
            ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                      frameon=False)
    if not metrics:
        axes[0][0].text(0.5, 0.5, "no metric to fit", ha="center", va="center")
        axes[0][0].set_axis_off()
    key = [Line2D([], [], ls="", marker="o", color=c, markeredgecolor="black", label=f"B = {b}")
           for b, c in colours.items()]
    key += [Line2D([], [], ls="", marker=m, color="grey", markeredgecolor="black", label=f"l = {l}")
            for l, m in markers.items()]
    fig.legend(handles=key, loc="outside right center", fontsize=8, title="Run")
    fig.suptitle(title)
    return _save(fig, path)
