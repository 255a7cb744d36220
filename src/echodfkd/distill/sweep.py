"""(B, l) sweeps for the scaling-law study: one student per grid point, `out/b{B}_l{l}/`.

A sweep resumes: it skips finished runs and continues unfinished ones from their last checkpoint. `--shard
i/N` lets N processes share the grid. For DDP inside a sweep, launch the processes externally (`torchrun
... -m echodfkd sweep ...`): Lightning's own process launcher supports a single `fit` per script only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from echodfkd.distill.train import distill, is_finished
from echodfkd.errors import EchoDFKDError
from echodfkd.io.atomic import save_text
from echodfkd.io.records import StudentConfig
from echodfkd.launch import check_shard
from echodfkd.progress import progress


def parse_range(text: str | int, what: str = "value") -> list[int]:
    """'1-4' -> [1, 2, 3, 4]; '1,3' -> [1, 3]; '2' -> [2]."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise EchoDFKDError(f"{what} {text!r}: use a number, a range like 1-4, or a comma list")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo < 1 or hi < lo:
            raise EchoDFKDError(f"{what} {text!r}: ranges go from 1 upwards (lo-hi with lo <= hi)")
        out.extend(v for v in range(lo, hi + 1) if v not in out)
    return out


def run_summary(run: Path) -> dict[str, Any]:
    """One row describing a finished run (architecture, size, training outcome, thresholds)."""
    cfg = StudentConfig.read(run).to_dict()
    training, cal, thr = cfg.get("training", {}), cfg.get("calibration", {}), cfg.get("thresholds", {})
    return {"run": run.name, "blocks": cfg["blocks"], "layers": cfg["layers"], "params": cfg.get("params"),
            "best_val_loss": training.get("best_val_loss"), "epochs_trained": training.get("epochs_trained"),
            "threshold_dice": thr.get("dice"), "threshold_afd": thr.get("afd"),
            "val_dice": cal.get("val_dice"), "afd_consistency": cal.get("afd_consistency")}


def sweep(data_root: str | os.PathLike, targets_dir: str | os.PathLike, out: str | os.PathLike,
          blocks: list[int] | str = "1-4", layers: list[int] | str = "1-4", shard: tuple[int, int] = (0, 1),
          after: Callable[[Path], Any] | None = None, **kw: Any) -> pd.DataFrame:
    """Train every (B, l) of the grid into `out/b{B}_l{l}/`; finished runs are skipped. Returns the summary.

    `after(run)` is called for each finished run of this shard, trained now or before (e.g. to evaluate it).
    """
    out = Path(out)
    bs = parse_range(blocks, "blocks") if isinstance(blocks, str) else list(blocks)
    ls = parse_range(layers, "layers") if isinstance(layers, str) else list(layers)
    index, count = check_shard(shard)
    grid = [(b, l) for b in bs for l in ls][index::count]
    for b, l in progress(grid, desc="sweep", unit="run"):
        run = out / f"b{b}_l{l}"
        if not is_finished(run):
            distill(data_root, targets_dir, run, blocks=b, layers=l, resume=True, **kw)
        if after is not None and is_finished(run):
            after(run)
    rows = [run_summary(p) for p in sorted(out.glob("b*_l*")) if is_finished(p)]
    summary = pd.DataFrame(rows).sort_values(["params", "run"]) if rows else pd.DataFrame()
    save_text(out / "summary.csv", summary.to_csv(index=False))
    return summary
