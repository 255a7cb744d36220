"""CAMUS reports: report.md + metrics.json + per_view.csv + figures for one run; supp. Table 3 for a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from echodfkd.io.atomic import save_json, save_text
from echodfkd.io.records import CamusMetrics
from echodfkd.report import camus_figures
from echodfkd.report.tables import fmt, fmt_ci, fmt_params, markdown, segmentation_table

GROUPS = (("all", None), ("4CH", "by_view"), ("2CH", "by_view"), ("Good", "by_quality"),
          ("Medium", "by_quality"), ("Poor", "by_quality"))


def _group(seg: dict, key: str, where: str | None) -> dict | None:
    return seg["all"] if where is None else seg.get(where, {}).get(key)


def _groups_table(seg: dict) -> str:
    rows = []
    for key, where in GROUPS:
        g = _group(seg, key, where)
        if not g or not g["overall"].get("n_frames"):
            continue
        o = g["overall"]
        label = "all views" if where is None else (f"view {key}" if where == "by_view" else f"quality {key}")
        rows.append([label, o["n_videos"], fmt(g["ED"].get("dice_per_video_mean"), 2, True),
                     fmt(g["ES"].get("dice_per_video_mean"), 2, True),
                     fmt_ci(o["dice_per_video_mean"], o["dice_per_video_mean_ci90"], 2, True),
                     fmt_ci(o["dice_pooled"], o["dice_pooled_ci90"], 2, True),
                     fmt_ci(o["iou_per_video_mean"], o["iou_per_video_mean_ci90"], 2, True),
                     fmt(o["iou_pooled"], 2, True)])
    return markdown(["Group", "Views", "Dice ED (%)", "Dice ES (%)", "Dice per-video mean (%)",
                     "Dice pooled (%)", "IoU per-video mean (%)", "IoU pooled (%)"], rows)


def _ef_table(ef: dict) -> str:
    rows = []
    for label, block in [("all views", ef["all"])] + [(f"view {v}", b) for v, b in ef["by_view"].items()]:
        for source, name in (("predicted", "student masks"), ("from_true_masks", "true masks")):
            s = block[source]
            rows.append([label, name, s["n"], fmt(s.get("pearson_r"), 3), fmt(s.get("mae"), 1),
                         fmt(s.get("median_abs_error"), 1), fmt(s.get("bias"), 1), fmt(s.get("rmse"), 1),
                         s.get("n_invalid", 0), s.get("n_outside_range", "—")])
    return markdown(["Group", "EF from", "Views", "Pearson r", "MAE (EF %)", "Median abs. error (EF %)",
                     "Bias (EF %)", "RMSE (EF %)", "No estimate", "Outside 0-100 %"], rows)


def _picks(per_view: pd.DataFrame, k: int = 3) -> list[tuple[str, str]]:
    """Best, median and worst views by mean ED/ES Dice."""
    order = per_view.sort_values(["Dice_mean", "FileName"], ascending=[False, True])["FileName"].tolist()
    idx = sorted({0, len(order) // 2, len(order) - 1})[:k]
    tags = {0: "best", len(order) // 2: "median", len(order) - 1: "worst"}
    return [(order[i], tags[i]) for i in idx]


def table3_row(metrics: dict) -> dict:
    """The headline numbers of one run for the Table 3 sweep layout."""
    seg = metrics["segmentation"]
    row = {"run": metrics["student"]["name"], "blocks": metrics["student"].get("blocks"),
           "layers": metrics["student"].get("layers"), "params": metrics["student"].get("params")}
    for key, where in GROUPS:
        g = _group(seg, key, where)
        o = g["overall"] if g else {}
        row[f"dice_{key}"] = o.get("dice_per_video_mean")
        row[f"iou_{key}"] = o.get("iou_per_video_mean")
    o = seg["all"]["overall"]
    row.update({"dice_pooled": o.get("dice_pooled"), "iou_pooled": o.get("iou_pooled"),
                "n_views": o.get("n_videos"), "ef_mae": metrics["ef"]["all"]["predicted"].get("mae"),
                "ef_median_abs_error": metrics["ef"]["all"]["predicted"].get("median_abs_error")})
    return row


def _settings_lines(metrics: dict) -> list[str]:
    st, s = metrics["student"], metrics["settings"]
    arch = f"B = {st.get('blocks')}, l = {st.get('layers')}, {fmt_params(st.get('params'))} parameters"
    lines = [f"- Data: `{metrics['dataset']}` ({metrics['n_patients']} patients, views {', '.join(s['views'])}, "
             f"{metrics['segmentation']['all']['overall'].get('n_videos', 0)} half-sequences)",
             f"- Student: `{st['run']}` ({arch})",
             f"- Streaming: warm-up {s['warmup']} frame(s) (the first frame repeated), largest component "
             f"{'on' if s['largest_component'] else 'off'}, threshold {s['threshold']:.3g} (fraction of 255, "
             f"{s['threshold_source']}), model size {s['model_size'][1]}x{s['model_size'][0]}",
             f"- Framing: {s['framing']}, {s['framing_note']}"
             + (f" ({s['framing_fallbacks']} view(s) fell back to the box)" if s.get("framing_fallbacks") else "")
             + "; resized to the model size; masks scored at the native size against label 1 of the ED/ES "
               "`_gt` files"]
    if s["warmup"] == 0:
        lines.append("- Note: no warm-up. ED is the first frame of every half-sequence, so the ConvLSTM scores "
                     "it from a cold state; `--warmup K` (the first frame fed K extra times) lets it settle")
    return lines


def write_camus_report(out: Path, metrics: dict, per_view: pd.DataFrame, rows: pd.DataFrame,
                       example: Callable[[str], dict] | None = None) -> dict:
    """Write metrics.json, report.md, per_view.csv, overlaps.csv and figures/*.png under `out`.

    `example(name)` gives a view's ED/ES images and masks for the best/median/worst figure (none without it).
    """
    out = Path(out)
    fig_dir = out / "figures"
    name = metrics["student"]["name"]
    figs = [camus_figures.summary(per_view, fig_dir / "camus_summary.png", f"CAMUS: {name}")]
    picks = [(n, tag, example(n)) for n, tag in _picks(per_view)] if example is not None else []
    if picks:
        figs.append(camus_figures.examples(picks, fig_dir / "camus_examples.png"))
    metrics["figures"] = [p.relative_to(out).as_posix() for p in figs]
    metrics["table3_row"] = table3_row(metrics)
    seg, ef = metrics["segmentation"], metrics["ef"]
    text = ["# EchoDFKD on CAMUS", ""] + _settings_lines(metrics) + [
        "", "## Dice / IoU against the LV label (ED and ES frames)", "", segmentation_table(seg["all"]),
        "Per-video mean: mean over a view's ED and ES, then over views (the paper's). Pooled: "
        "2·ΣI / (ΣU + ΣI) over all pixels (EchoNet's). Brackets: bootstrap 90 % interval "
        f"({metrics['settings']['bootstrap']} resamples of views).", "",
        "## By view and image quality", "", _groups_table(seg),
        "## Ejection fraction", "",
        f"Method: {ef['all']['method']}, from the ED and ES masks of each view (one plane), against the EF "
        "of `Info_<view>.cfg` (in the real CAMUS a biplane clinical value, so even perfect masks leave the "
        "'true masks' error). Pearson r needs at least 3 views.", "", _ef_table(ef)]
    text += ["## Figures", ""] + [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figs] + [""]
    text += [f"Per-view numbers: `per_view.csv`; per-frame overlap counts: `overlaps.csv`.", ""]
    save_text(out / "per_view.csv", per_view.to_csv(index=False))
    save_text(out / "overlaps.csv", rows.to_csv(index=False))
    CamusMetrics.parse(metrics, out / CamusMetrics.FILE).write(out / CamusMetrics.FILE)
    save_text(out / "report.md", "\n".join(text))
    return metrics


def table3_grid(rows: Sequence[dict]) -> str:
    """Supp. Table 3 layout: meanIoU then Dice (%), one line per layers l, one column per blocks B."""
    blocks = sorted({r["blocks"] for r in rows if r.get("blocks") is not None})
    layers = sorted({r["layers"] for r in rows if r.get("layers") is not None})
    body = []
    for metric, key in (("meanIoU", "iou_all"), ("Dice score", "dice_all")):
        for l in layers:
            cells = [metric, f"l{l}"]
            for b in blocks:
                hit = [r for r in rows if r.get("blocks") == b and r.get("layers") == l]
                cells.append(fmt(hit[0][key], 2, True) + " %" if hit and hit[0].get(key) is not None else "—")
            body.append(cells)
    return markdown(["Metric", "Layers"] + [f"B{b}" for b in blocks], body)


def write_table3(out: Path, rows: Sequence[dict], sweep: Path, data: str) -> dict:
    """Write the sweep's Table 3 (paper layout plus one row per run) as report.md, table3.csv, table3.json."""
    out = Path(out)
    rows = sorted(rows, key=lambda r: (r.get("params") or 0, r["run"]))
    per_run = [[f"[{r['run']}]({r['run']}/report.md)", f"({r.get('blocks')},{r.get('layers')})",
                fmt_params(r.get("params")), r.get("n_views"),
                fmt(r.get("dice_4CH"), 2, True), fmt(r.get("dice_2CH"), 2, True),
                fmt(r.get("dice_Good"), 2, True), fmt(r.get("dice_Medium"), 2, True),
                fmt(r.get("dice_Poor"), 2, True), fmt(r.get("dice_all"), 2, True),
                fmt(r.get("dice_pooled"), 2, True), fmt(r.get("iou_all"), 2, True), fmt(r.get("ef_mae"), 1),
                fmt(r.get("ef_median_abs_error"), 1)]
               for r in rows]
    text = ["# EchoDFKD on CAMUS: supplement Table 3", "",
            f"Sweep `{sweep}` ({len(rows)} runs) on `{data}`.", "",
            "## Table 3 (paper layout)", "", table3_grid(rows),
            "Per-video mean over the ED and ES frames of every half-sequence (both views).", "",
            "## One row per run", "",
            markdown(["Run", "(B,l)", "Params", "Views", "Dice 4CH", "Dice 2CH", "Dice Good", "Dice Medium",
                      "Dice Poor", "Dice (per-video mean)", "Dice (pooled)", "meanIoU", "EF MAE (EF %)",
                      "EF median abs. error (EF %)"],
                     per_run),
            "Dice and meanIoU in %, per-video means unless marked pooled. Each run's own report is linked.", ""]
    save_text(out / "table3.csv", pd.DataFrame(rows).to_csv(index=False))
    result: dict[str, Any] = {"sweep": str(sweep), "dataset": data, "runs": list(rows)}
    save_json(out / "table3.json", result)
    save_text(out / "report.md", "\n".join(text))
    return result
