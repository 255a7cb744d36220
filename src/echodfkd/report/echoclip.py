"""EchoCLIP report: echoclip.json, echoclip.md and figures (Fig. 5-like curves, scores by model size)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from echodfkd.io.atomic import atomic_path, save_json, save_text
from echodfkd.measures.phases import PHASES


def _f(x: float | None, nd: int = 4) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def markdown(results: dict, figure_files: list[str]) -> str:
    """The human-readable report."""
    s, m, st = results["summary"], results["model"], results["settings"]
    p = st["prompts"]
    lines = [
        "# EchoCLIP evaluation", "",
        f"- Model: `{m['spec']}` ({m['arch']}), weights sha256 `{m['weights_sha256'][:16]}…`, "
        f"{m['device']}/{m['precision']}",
        f"- Data: `{results['data']}`, split {st['split'] or 'all'}, {s['clips']} clip(s); "
        f"{results['embeddings']['computed_frames']} frame embedding(s) computed this run (rest from cache)",
        f"- Similarity: {st['similarity']}. Masks binarised at {st['threshold']:g}×255; "
        f"variant (b) dilates them by {st['dilation_px']} px (disk) before blackening.",
        "",
        "## Mask quality",
        "",
        f"(a) = mask blackened, sim to \"{p['wall']}\"; (b) = mask dilated and blackened, sims to "
        f"\"{p['lv']}\" and \"{p['nothing']}\". Combined = WALL(a) + NOTHING(b) − LV(b) (reference score; "
        "higher is better). Unmasked frames are shown for reference.",
        "",
        "| model | params | clips | WALL (a) | LV (b) | NOTHING (b) | LV − NOTHING | combined |",
        "|---|---|---|---|---|---|---|---|",
        f"| unmasked frames | — | {s['clips']} | {_f(s['raw']['wall'])} | {_f(s['raw']['lv'])} | "
        f"{_f(s['raw']['nothing'])} | {_f(_diff(s['raw']['lv'], s['raw']['nothing']))} | — |",
    ]
    for name, r in s["models"].items():
        lines.append(f"| {name} | {r['params'] if r['params'] is not None else '—'} | {r['clips']} | "
                     f"{_f(r['wall'])} | {_f(r['lv'])} | {_f(r['nothing'])} | {_f(r['lv_minus_nothing'])} | "
                     f"{_f(r['combined'])} |")
    lines += [
        "", "## Cardiac phase from EchoCLIP", "",
        f"Integrated prompt signal = {st['phase_sign']:+g} × detrend(cumsum(sim(\"{p['closed']}\") − "
        f"sim(\"{p['open']}\"))); ED = max, ES = min of its median blocks (aFD method). Anchor: the human "
        "frame where one exists, else every beat EchoCLIP finds.", "",
        f"EchoCLIP vs humans ({s['clips_with_human']} clip(s) with human frames): aFD ED "
        f"{_f(s['echoclip_vs_human']['ED'], 2)}, ES {_f(s['echoclip_vs_human']['ES'], 2)} frames.", "",
        "| model | aFD vs EchoCLIP, ED | ES | area threshold | median corr(area, signal) |",
        "|---|---|---|---|---|",
    ]
    corrs = []
    for name, r in s["models"].items():
        a = r["afd_vs_echoclip"]
        corrs.append(r["corr_area_curve_median"])
        lines.append(f"| {name} | {_f(a['ED'], 2)} | {_f(a['ES'], 2)} | {r['area_threshold']:g} | "
                     f"{_f(r['corr_area_curve_median'], 2)} |")
    known = [c for c in corrs if c is not None]
    if known and np.median(known) < -0.3:  # clearly anti-correlated, not just noise
        lines += ["", f"Note: the signal runs opposite to the mask areas (median r = {np.median(known):.2f}); "
                  "ED/ES may be swapped. "
                  f"Rerun with `--phase-sign {-st['phase_sign']:+g}` if the masks are trusted."]
    for group, rows in s.get("sweeps", {}).items():
        lines += ["", f"## Scores by model size — sweep `{group}`", "",
                  "| model | params | combined | WALL (a) | LV (b) | NOTHING (b) | aFD vs EchoCLIP ED | ES |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['model']} | {r['params'] if r['params'] is not None else '—'} | "
                         f"{_f(r['combined'])} | {_f(r['wall'])} | {_f(r['lv'])} | {_f(r['nothing'])} | "
                         f"{_f(r['afd_vs_echoclip']['ED'], 2)} | {_f(r['afd_vs_echoclip']['ES'], 2)} |")
    if figure_files:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figure_files]
    return "\n".join(lines) + "\n"


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")


def phase_figure(clip: str, data: dict, path: Path) -> None:
    """Fig. 5-like: each model's mask area (left axis) and EchoCLIP's integrated signal (right axis)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4))
    t = np.arange(len(data["curve"]))
    for name, area in data["areas"].items():
        ax.plot(t, area, lw=1.4, label=f"mask area: {name}")
    ax.set_xlabel(f"frame (at {data['fps']:g} fps)")
    ax.set_ylabel("LV mask area (pixels)")
    ax2 = ax.twinx()
    ax2.plot(t, data["curve"], color="black", lw=1.6, ls="--", label="EchoCLIP integrated signal")
    ax2.set_ylabel("integrated prompt signal (a.u.)\ndetrend(Σ sim(CLOSED) − sim(OPEN))")
    colors = {"ED": "tab:red", "ES": "tab:blue"}
    for ph in PHASES:
        for i, f in enumerate(data["echoclip"].get(ph, [])):
            ax.axvline(f, color=colors[ph], ls=":", lw=1.2, label=f"EchoCLIP {ph}" if i == 0 else None)
        for i, f in enumerate(data["human"].get(ph, [])):
            ax.axvline(f, color=colors[ph], ls="-", alpha=0.35, lw=3, label=f"human {ph}" if i == 0 else None)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right", framealpha=0.8)
    ax.set_title(f"{clip}: mask area and EchoCLIP phase signal")
    _save(fig, path)
    plt.close(fig)


def sweep_figure(group: str, rows: list[dict], path: Path) -> bool:
    """EchoCLIP combined score against model size (Fig. 3's right axis); False when sizes are unknown."""
    pts = [(r["params"], r["combined"], r["model"]) for r in rows if r["params"] and r["combined"] is not None]
    if not pts:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    x, y, names = zip(*sorted(pts))
    ax.plot(x, y, "o-", color="tab:purple")
    for xi, yi, n in zip(x, y, names):
        ax.annotate(n.split("/")[-1], (xi, yi), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log")
    ax.set_xlabel("model size (parameters)")
    ax.set_ylabel("EchoCLIP combined score\nWALL + NOTHING − LV (cosine)")
    ax.set_title(f"EchoCLIP score by model size: {group}")
    ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)
    return True


def write_report(results: dict, figures: dict, out: str | os.PathLike) -> dict[str, Path]:
    """Write echoclip.json, echoclip.md and figures/*.png under `out`; returns the paths."""
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    rel: list[str] = []
    for clip, data in figures.items():
        name = f"figures/phase_{_safe(clip)}.png"
        phase_figure(clip, data, out / name)
        rel.append(name)
    for group, rows in results["summary"].get("sweeps", {}).items():
        name = f"figures/sweep_{_safe(group)}.png"
        if sweep_figure(group, rows, out / name):
            rel.append(name)
    results = dict(results, figures=rel)
    paths = {"json": save_json(out / "echoclip.json", results),
             "md": save_text(out / "echoclip.md", markdown(results, rel))}
    return paths
