"""Early sanity check of the teacher: its Dice against the human traces, right after it labels a folder.

A teacher loaded with the wrong checkpoint or input normalisation still writes targets of the right shape,
and every later step runs; only the final report would show Dice near 0. This check reads the targets of
the traced clips just labelled (at most `MAX_CLIPS`, two frames each) and warns before any training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from echodfkd.errors import EchoDFKDError

#: Far below any working LV teacher (EchoNet's DeepLabv3 reaches about 0.92 on the traced frames).
DICE_FLOOR = 0.5
MAX_CLIPS = 200


def teacher_dice(ds: Any, targets: Path, split: str, max_clips: int = MAX_CLIPS) -> dict | None:
    """Per-video mean Dice of the teacher targets vs the traces at the traced ED/ES frames, or None."""
    from echodfkd.evaluate.predictions import TEACHER_THRESHOLD, load_masks
    from echodfkd.evaluate.segmentation import tracing_rows
    from echodfkd.measures.masks import dice_from_counts

    if not getattr(ds, "has_tracings", False):
        return None
    rows = []
    for name in ds.names(split):
        if len(rows) >= max_clips:
            break
        path = Path(targets) / f"{name}.npz"
        if not path.is_file():
            continue
        try:
            rows.append(tracing_rows(ds, name, load_masks(path), TEACHER_THRESHOLD, path))
        except EchoDFKDError:
            continue  # an untraced or unreadable clip is the check step's business, not this one's
    if not rows:
        return None
    items = pd.concat(rows)
    items["dice"] = dice_from_counts(items["I"].to_numpy(), items["U"].to_numpy(), reduction="none")
    per_video = items.groupby("FileName")["dice"].mean()
    return {"split": split, "clips": int(per_video.size), "dice": float(np.mean(per_video))}


def warn_low_teacher_dice(ds: Any, targets: Path, split: str, echo: Callable[[str], None],
                          floor: float = DICE_FLOOR) -> dict | None:
    """Print a warning through `echo` when the teacher's traced-frame Dice is below `floor`."""
    found = teacher_dice(ds, targets, split)
    if found is not None and found["dice"] < floor:
        echo(f"WARNING: the teacher's Dice against the human traces is {found['dice']:.3f} on {found['clips']} "
             f"traced {split} clip(s) of {ds.root} (below {floor:g}; a working teacher is near 0.9): check the "
             f"checkpoint (--teacher) and its input normalisation before trusting anything downstream")
    return found
