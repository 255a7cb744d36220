"""Screen outputs: screen.csv, screen.json, screen.md, contact sheets (Fig. 9) and the curated list.

The curated list has `corrupted.csv`'s format (`FileName,reason,detail`, reason `echoclip_<prompt>`), so
`evaluate --corrupted` reads it. Given an existing list (e.g. the one `check --out` wrote), the screen's
rows are merged into it: its own rows are kept, rows of an earlier screen (reason `echoclip_*`) replaced.
"""

from __future__ import annotations

import csv
import io
import os
import textwrap
from pathlib import Path

import numpy as np

from echodfkd.data.check import read_corrupted_table
from echodfkd.errors import DatasetError, EchoDFKDError
from echodfkd.evaluate.echoclip.screen import ScreenResult, extremes
from echodfkd.io.atomic import atomic_path, save_json, save_text

REASON_PREFIX = "echoclip_"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _frame(ds, name: str) -> np.ndarray | None:
    """The middle frame of a clip (None when it cannot be decoded)."""
    try:
        frames, _ = ds.video(name)
    except EchoDFKDError:
        return None
    return frames[frames.shape[0] // 2]


def contact_sheet(ds, result: ScreenResult, prompt: str, k: int, path: Path) -> Path | None:
    """Fig. 9-like: the middle frame of the k clips most (top row) and least (bottom row) like a prompt."""
    top, bottom = extremes(result.table, prompt, k)
    if top.empty:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(top), 1)
    rows = [("most", top)] + ([("least", bottom.iloc[::-1])] if not bottom.empty else [])
    fig, axes = plt.subplots(len(rows), cols, figsize=(max(1.9 * cols + 0.6, 5.0), 2.25 * len(rows) + 0.8),
                             squeeze=False)
    for r, (which, sub) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(sub):
                ax.set_axis_off()
                continue
            row = sub.iloc[c]
            img = _frame(ds, row["FileName"])
            if img is not None:
                ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{row['FileName'][:18]}\n#{int(row[f'rank_{prompt}'])}, {row[f'score_{prompt}']:.3f}",
                         fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{which} like it", fontsize=9)
    n = len(result.table)
    text = textwrap.shorten(result.prompts[prompt], 70, placeholder="…")
    fig.suptitle(f"EchoCLIP screen: \"{text}\"\nmiddle frame of each clip; #rank of {n} clips, "
                 "mean cosine similarity over its frames", fontsize=9)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def merge_curated(path: str | os.PathLike, rows: list[dict]) -> dict:
    """Write `rows` to a corrupted.csv-format list, merged into the file when it exists (module doc)."""
    path = Path(path)
    kept: list[dict] = []
    columns = ["FileName", "reason", "detail"]
    replaced = 0
    if path.is_file():
        old = read_corrupted_table(path)
        if len(old.columns) < 2:
            raise DatasetError(f"{path}: cannot merge into it: needs FileName and a reason column, "
                               f"has {list(old.columns)}")
        columns = list(old.columns) + (["detail"] if "detail" not in old.columns else [])
        reason_col = columns[1]
        ours = old[reason_col].str.startswith(REASON_PREFIX)
        replaced = int(ours.sum())
        kept = old[~ours].to_dict(orient="records")
        rows = [{"FileName": r["FileName"], reason_col: r["reason"], "detail": r["detail"]} for r in rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in kept + rows:
        writer.writerow({c: r.get(c, "") for c in columns})
    save_text(path, buf.getvalue())
    return {"path": str(path), "kept": len(kept), "added": len(rows), "replaced": replaced}


def screen_markdown(result: ScreenResult, meta: dict, sheets: dict[str, str], k: int) -> str:
    """The screen report: prompts, the extremes of each, failures and the curated list."""
    t = result.table
    lines = ["# EchoCLIP screen", "",
             f"- Model: `{meta['model']['spec']}` ({meta['model']['arch']}), weights sha256 "
             f"`{meta['model']['weights_sha256'][:16]}…`",
             f"- Data: `{meta['data']}`, split {meta['split'] or 'all'}: {len(t)} clip(s) screened, "
             f"{len(result.failed)} unreadable; {result.computed_frames} frame embedding(s) computed this run "
             "(the rest from the cache the EchoCLIP evaluation shares)",
             "- Score: mean over the clip's frames of the cosine similarity to the prompt; rank 1 = most like it.",
             "", "| prompt | text | mean score | min | max |", "|---|---|---|---|---|"]
    for name, text in result.prompts.items():
        s = t[f"score_{name}"]
        lines.append(f"| {name} | \"{text}\" | {s.mean():.4f} | {s.min():.4f} | {s.max():.4f} |")
    for name in result.prompts:
        top, bottom = extremes(t, name, k)
        lines += ["", f"## {name}", "",
                  "Most like it: " + ", ".join(f"`{r.FileName}` ({getattr(r, f'score_{name}'):.4f})"
                                               for r in top.itertuples()),
                  "", "Least like it: " + (", ".join(f"`{r.FileName}` ({getattr(r, f'score_{name}'):.4f})"
                                                     for r in bottom.iloc[::-1].itertuples()) or "—")]
        if name in sheets:
            lines += ["", f"![{name}]({sheets[name]})"]
    if result.failed:
        lines += ["", "## Not screened", ""] + [f"- `{n}`: {why}" for n, why in list(result.failed.items())[:20]]
    if meta.get("curated"):
        c = meta["curated"]
        lines += ["", "## Curated list", "",
                  f"`{c['path']}`: {c['added']} row(s) from this screen ({', '.join(meta['curate_counts'])}), "
                  f"{c['kept']} row(s) kept from the file, {c['replaced']} from an earlier screen replaced. "
                  "Pass it to `evaluate --corrupted` to leave these clips out of the clean subset."]
    return "\n".join(lines) + "\n"


def write_screen(ds, result: ScreenResult, out: str | os.PathLike, meta: dict, k: int) -> dict[str, Path]:
    """screen.csv, screen.json, screen.md and figures/screen_<prompt>.png under `out`."""
    out = Path(out)
    sheets: dict[str, str] = {}
    for name in result.prompts:
        rel = f"figures/screen_{_safe(name)}.png"
        if contact_sheet(ds, result, name, k, out / rel) is not None:
            sheets[name] = rel
    table = result.table.sort_values(f"rank_{next(iter(result.prompts))}")
    paths = {"csv": save_text(out / "screen.csv", table.to_csv(index=False, float_format="%.6f")),
             "json": save_json(out / "screen.json", dict(meta, prompts=result.prompts, clips=len(table),
                                                         failed=result.failed, figures=list(sheets.values()),
                                                         computed_frames=result.computed_frames)),
             "md": save_text(out / "screen.md", screen_markdown(result, meta, sheets, k))}
    return paths
