"""Markdown tables shaped like the paper's: Table 1 (Dice/meanIoU by B × l), Table 2 (params, aFD ED/ES)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import pandas as pd

from echodfkd.io.records import overall


def fmt(value: Any, digits: int = 2, pct: bool = False) -> str:
    """A number for a table cell ('—' when missing)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (int, float)):
        return f"{100 * value:.{digits}f}" if pct else f"{value:.{digits}f}"
    return str(value)


def fmt_ci(value: Any, ci: Sequence[float] | None, digits: int = 2, pct: bool = False) -> str:
    """'v [lo, hi]' with the 90 % interval when there is one."""
    if ci is None or value is None or any(c is None for c in ci):
        return fmt(value, digits, pct)
    return f"{fmt(value, digits, pct)} [{fmt(ci[0], digits, pct)}, {fmt(ci[1], digits, pct)}]"


def fmt_params(n: Any) -> str:
    """Parameter count as the paper writes it (5.7 K, 0.72 M)."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "—"
    n = float(n)
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} K"


def markdown(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def table1(sweep: pd.DataFrame) -> str:
    """Table 1: rows B, columns l, cells 'Dice / meanIoU' in % (per-video mean over traced frames)."""
    layers = sorted(sweep["layers"].unique())
    rows = []
    for b in sorted(sweep["blocks"].unique()):
        cells = [f"B = {b}"]
        for l in layers:
            hit = sweep[(sweep["blocks"] == b) & (sweep["layers"] == l)]
            if hit.empty:
                cells.append("—")
            else:
                r = hit.iloc[0]
                cells.append(f"{fmt(r.get('dice'), 2, True)} / {fmt(r.get('iou'), 2, True)}")
        rows.append(cells)
    return markdown(["Dice / meanIoU (%)"] + [f"l = {l}" for l in layers], rows)


def table2(rows: Sequence[dict]) -> str:
    """Table 2: method, params, aFD ED / ES (frames) on the full set and on the clean subset."""
    body = [[r.get("method", "—"), fmt_params(r.get("params")), fmt(r.get("aFD_ED")), fmt(r.get("aFD_ES")),
             fmt(r.get("clean_aFD_ED")), fmt(r.get("clean_aFD_ES")), r.get("n", "—")] for r in rows]
    return markdown(["Method", "Params", "aFD ED (full)", "aFD ES (full)", "aFD ED (clean)",
                     "aFD ES (clean)", "Clips (full)"], body)


def segmentation_table(block: dict) -> str:
    """Dice and IoU (%) at ED, ES and overall: per-video mean and EchoNet pooled, with 90 % intervals."""
    rows = []
    for key in ("ED", "ES", "overall"):
        s = overall(block) if key == "overall" else block.get(key)
        if not s or not s.get("n_frames"):
            continue
        rows.append([key, s["n_videos"], s["n_frames"],
                     fmt_ci(s["dice_per_video_mean"], s["dice_per_video_mean_ci90"], 2, True),
                     fmt_ci(s["dice_pooled"], s["dice_pooled_ci90"], 2, True),
                     fmt_ci(s["iou_per_video_mean"], s["iou_per_video_mean_ci90"], 2, True),
                     fmt_ci(s["iou_pooled"], s["iou_pooled_ci90"], 2, True)])
    return markdown(["Frames", "Videos", "Items", "Dice per-video mean (paper)", "Dice pooled (EchoNet)",
                     "IoU per-video mean", "IoU pooled"], rows)


def afd_table(afd: dict) -> str:
    """aFD in frames and seconds, with 90 % intervals and signed bias, full set and clean subset."""
    rows = []
    for subset in ("full", "clean"):
        s = afd.get(subset) or {}
        if not s.get("n_clips"):
            continue
        for phase in ("ED", "ES"):
            sec = s.get(f"aFD_{phase}_seconds")
            rows.append([subset, phase, s["n_clips"], fmt_ci(s.get(f"aFD_{phase}"), s.get(f"aFD_{phase}_ci90")),
                         fmt(None if sec is None else 1000 * sec, 1), fmt(s.get(f"bias_{phase}"))])
    return markdown(["Subset", "Phase", "Clips", "aFD (frames) [90 % CI]", "aFD (ms)",
                     "Bias found − human (frames)"], rows)
